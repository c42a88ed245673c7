//! Waterfall jobs in the simulation: two steps (Enrow's email finder, then FullEnrich), each a
//! job of its own through the same starter, bulk-fetch and sweeper, under duplicate, unsigned
//! and per-contact webhooks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use relay_shared::Provider;
use relay_shared::jobs::{JobStatus, Operation, Outcome};
use relay_shared::store::Jobs;
use serde_json::json;

use crate::provider::{Faults, Finds, Kind, SimProvider, found};
use crate::{DEADLINE, Sim};

/// Enrow finds six people in ten ([`found`]); FullEnrich finds half the rest (those whose
/// number ends in 2 or 8), and would find no one Enrow finds.
fn enrow_then_half_the_rest() -> Finds {
    Arc::new(|provider, person| match provider {
        Provider::Enrow => found(person),
        Provider::Fullenrich => matches!(person % 10, 2 | 8),
    })
}

fn two_steps() -> Vec<(Provider, Operation, serde_json::Value)> {
    vec![
        (Provider::Enrow, Operation::EmailFind, json!({})),
        (
            Provider::Fullenrich,
            Operation::Enrich,
            json!({"enrich_fields": ["contact.work_emails"]}),
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_two_step_waterfall_settles_each_contact_once_at_the_step_that_found_it() {
    for seed in 1..=20 {
        let faults = Faults {
            seed,
            min_copies: 1,
            max_copies: 4,
            unsigned: 0.3,
            per_contact: 0.5,
            ready_after: Duration::from_secs(60),
            ..Faults::none()
        };
        let mut sim =
            Sim::with_provider(SimProvider::with_finds(faults, enrow_then_half_the_rest()));
        // 50 contacts in 10 chunks; chunk 0's start message is lost: it starts only when the
        // sweeper finds it overdue, 20 minutes on, so the first step ends late.
        let job = sim.submit_waterfall(&two_steps(), 50, 5, None, &[0]);
        sim.run(DEADLINE * 4).await;
        sim.stop();

        let rows = sim.waterfall_rows(&job).await;
        assert_eq!(rows.len(), 50, "seed {seed}: one row per contact");
        for r in &rows {
            let k = r.index.get();
            let s = r.waterfall.as_ref().expect("a waterfall row");
            let (provider, outcome, attempts) = if found(k) {
                (Provider::Enrow, Outcome::Found, 1)
            } else if matches!(k % 10, 2 | 8) {
                (Provider::Fullenrich, Outcome::Found, 2)
            } else {
                (Provider::Fullenrich, Outcome::NotFound, 2)
            };
            assert_eq!(
                (s.provider, r.outcome),
                (provider, outcome),
                "seed {seed}: contact {k}"
            );
            assert_eq!(s.attempts.len(), attempts, "seed {seed}: contact {k}");
            assert!(!r.provisional, "seed {seed}: contact {k} settled");
            assert_eq!(r.custom, Some(json!({"crm_id": format!("lead_{k}")})));
        }
        // FullEnrich is never asked about a contact Enrow found, and no one is asked twice by
        // one provider.
        let mut asked = HashSet::new();
        for (provider, people) in sim.provider.asked() {
            for p in people {
                assert!(
                    asked.insert((provider, p)),
                    "seed {seed}: {p} asked twice of {provider}"
                );
                if provider == Provider::Fullenrich {
                    assert!(
                        !found(p),
                        "seed {seed}: FullEnrich asked about {p}, found by Enrow"
                    );
                }
            }
        }
        assert_eq!(asked.len(), 50 + 20, "seed {seed}");
        // The figures are exact under every duplicate: each contact counted once, where it
        // settled.
        let head = sim.meta(&job).await;
        let steps = sim.steps_of(&job).await;
        assert_eq!(head.status, JobStatus::Completed, "seed {seed}");
        assert_eq!(
            (head.done, head.found, head.not_found, head.failed),
            (50, 40, 10, 0),
            "seed {seed}"
        );
        let first = sim.meta(&steps[0]).await;
        let second = sim.meta(&steps[1]).await;
        assert_eq!(
            (first.found, first.passed_on.not_found),
            (30, 20),
            "seed {seed}"
        );
        assert_eq!(
            (second.contacts, second.found, second.not_found),
            (20, 10, 10)
        );
        // Leftovers start before the first step ends: FullEnrich's first start comes before
        // the first step's job is seen ended.
        let first_ended = sim.log().ended_at[&steps[0]];
        let fullenrich_first = sim
            .provider
            .calls()
            .iter()
            .filter(|c| c.provider == Provider::Fullenrich && c.kind == Kind::Start)
            .map(|c| c.at_ms)
            .min()
            .expect("FullEnrich started");
        assert!(
            fullenrich_first + 10 * 60_000 < first_ended,
            "seed {seed}: FullEnrich started at {fullenrich_first}, the first step ended at {first_ended}"
        );
        assert!(sim.log().dead_letters.is_empty(), "seed {seed}");
        let chunks = sim.jobs.chunks(&steps[0]).await.unwrap();
        assert!(
            chunks.iter().all(|c| c.passed),
            "seed {seed}: every chunk passed on"
        );
    }
}
