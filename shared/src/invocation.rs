//! The time an invocation has left: every wait a function makes (a rate slot, a provider call)
//! is bounded by the deadline Lambda gives the invocation, so a batch ends with its partial
//! response instead of being killed whole at the timeout.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `f` with `deadline` as the invocation's deadline ([`time_left`] inside it).
pub async fn within<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The shortest invocation time left, at its start, that the relay budgets waits against. The
/// deployed functions run 60 s (bulk-fetch) and 90 s (the worker); an emulator that hands out
/// a token deadline (cargo lambda watch gives Lambda's default 3 s) is not one to budget by.
pub const MIN_BUDGET: Duration = Duration::from_secs(15);

/// Runs `f` within a Lambda context's deadline (`context.deadline`: ms since the Unix epoch),
/// unless that leaves less than [`MIN_BUDGET`] (then unbounded, as outside an invocation).
pub async fn within_context<F: Future>(deadline_ms: u64, f: F) -> F::Output {
    let left = Duration::from_millis(deadline_ms.saturating_sub(crate::now_ms()));
    if left < MIN_BUDGET {
        return f.await;
    }
    within(Instant::now() + left, f).await
}

/// What is left of the current invocation; `None` outside one (tests, tools): no bound.
pub fn time_left() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

/// At most `wanted`, and no more than the invocation can afford once `reserve` (the work that
/// must still fit after the wait) is kept back. `None`: not even `reserve` fits.
pub fn bounded_wait(wanted: Duration, reserve: Duration) -> Option<Duration> {
    match time_left() {
        None => Some(wanted),
        Some(left) if left < reserve => None,
        Some(left) => Some(wanted.min(left - reserve)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_is_bounded_by_what_the_invocation_has_left() {
        assert_eq!(time_left(), None);
        assert_eq!(
            bounded_wait(Duration::from_secs(20), Duration::from_secs(25)),
            Some(Duration::from_secs(20)),
            "outside an invocation only the wanted wait bounds it"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        within(deadline, async {
            let w = bounded_wait(Duration::from_secs(20), Duration::from_secs(25)).unwrap();
            assert!(
                w <= Duration::from_secs(5) && w > Duration::from_secs(4),
                "{w:?}"
            );
            assert_eq!(
                bounded_wait(Duration::from_secs(1), Duration::from_secs(31)),
                None
            );
        })
        .await;
    }
}
