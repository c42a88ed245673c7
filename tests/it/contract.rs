//! The stores' contract on DynamoDB (moto): every case of `relay_shared::store::contract`, the
//! same cases the in-memory twins pass in shared's unit tests, one test per case.

use relay_shared::store::contract::Faults;
use relay_shared::store::{DynamoDedupe, DynamoJobStore};

use crate::support::Stack;
use crate::support::refuse::Refuse;

/// A job's creation fails at its last write, the one that clears its `creating` mark.
struct FailCreations(Refuse);

impl Faults for FailCreations {
    fn fail_creations(&self, on: bool) {
        self.0.set(on);
    }
}

/// A jobs store on a fresh stack's table, and its faults.
async fn jobs() -> (DynamoJobStore, FailCreations) {
    let stack = Stack::new().await;
    let refuse = Refuse::new("REMOVE creating");
    refuse.set(false);
    (refuse.store(&stack), FailCreations(refuse))
}

/// A dedupe store on a fresh stack's table: a 1 s lease.
async fn dedupe() -> DynamoDedupe {
    let stack = Stack::new().await;
    let ddb = relay_shared::aws::dynamodb(&stack.sdk);
    DynamoDedupe::new(ddb, stack.res.table("DedupeTable"), 1_000, 86_400)
}

relay_shared::store_contract!(jobs: jobs().await, dedupe: dedupe().await);

/// `GET /jobs/{id}` on DynamoDB: its job and chunks in one read of the chunk items (one
/// GetItem and one Query), where the two reads apart make two Queries.
#[tokio::test]
async fn a_job_with_its_chunks_is_one_query_of_its_chunk_items() {
    use relay_shared::store::{Jobs, contract};
    let stack = Stack::new().await;
    let count = crate::support::count::Count::default();
    let s = count.store(&stack);
    let meta = contract::created(&s, 5, 2).await;
    let id = &meta.job_id;
    count.reset();
    let together = s.job_with_chunks(id).await.unwrap().unwrap();
    assert_eq!(count.take("Query"), 1, "one query of the chunk items");
    let view = s.job_view(id).await.unwrap().unwrap();
    let chunks = s.chunks(id).await.unwrap();
    assert_eq!(
        count.take("Query"),
        2,
        "apart: the figures' query, then the chunks'"
    );
    assert_eq!(together, (view, chunks));
    assert_eq!(together.1.len(), 3);
}
