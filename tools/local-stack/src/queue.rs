//! What tests and benchmarks read from a queue in the emulator: how many messages it holds, and
//! every message in it (received and deleted).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName as A;

/// Messages in a queue, visible, in flight (received and not yet deleted) or delayed.
pub async fn messages_held(sqs: &Client, queue_url: &str) -> usize {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes.unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
        A::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .filter_map(|a| attrs.get(a)?.parse::<usize>().ok())
    .sum()
}

/// Receives (and deletes) every message now visible in `queue_url`, until two empty receives.
pub async fn drain(sqs: &Client, queue_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive");
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in messages {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .expect("delete");
            out.push(m.body.unwrap_or_default());
        }
    }
    out
}
