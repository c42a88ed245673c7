//! Where a delivery waits: a deferral or a wait for a request slot is a new, delayed copy of it on
//! the queue; anything else is what it was.

use relay_shared::envelope::Envelope;
use relay_shared::queue::Queue;

use crate::{Deps, Disposition, FetchWorker, MAX_REQUEUES};

impl<S: Deps> FetchWorker<S> {
    /// What a delivery's outcome comes to: a deferral (or a wait for a request slot) is a new,
    /// delayed copy of the delivery on the queue (the receive count of the copy starts at zero);
    /// if that cannot be sent, an ordinary retry. Any other outcome is what it was.
    pub(crate) async fn put_back(&self, env: &Envelope, outcome: Disposition) -> Disposition {
        match outcome {
            Disposition::Paced(wait) => {
                let delay = env.paced_delay(wait).min(relay_shared::queue::MAX_DELAY);
                let mut again = env.clone();
                again.paced = again.paced.saturating_add(1);
                match self.requeue.send_delayed(again.to_json(), delay).await {
                    Ok(_) => Disposition::Paced(delay),
                    Err(e) => Disposition::Retry(format!(
                        "waiting for a request slot; requeue failed: {e}"
                    )),
                }
            }
            Disposition::Deferred(_, r) if env.requeues >= MAX_REQUEUES => {
                Disposition::Retry(format!("{r}; requeued {MAX_REQUEUES} times already"))
            }
            Disposition::Deferred(wait, r) => {
                let (first, requeues) = (self.not_ready_wait, env.requeues);
                let backoff = relay_shared::retry::nth_delay(first, first * 32, requeues);
                let delay = wait.max(backoff).min(relay_shared::queue::MAX_DELAY);
                let mut again = env.clone();
                again.requeues += 1;
                match self.requeue.send_delayed(again.to_json(), delay).await {
                    Ok(_) => Disposition::Deferred(delay, r),
                    Err(e) => Disposition::Retry(format!("{r}; requeue failed: {e}")),
                }
            }
            other => other,
        }
    }
}
