//! Retry with backoff, one way everywhere: the schedules come from `backon`.
//!
//! A call that is simply tried again uses `backon::Retryable` with [`exponential`]; a loop that
//! carries state between tries (items a batch write left unprocessed, a lease to wait out) takes
//! its delays from the same schedule as an iterator (`exponential(..).build()`).

use std::time::Duration;

use backon::ExponentialBuilder;
pub use backon::{BackoffBuilder, Retryable};

/// `times` delays doubling from `first` (at most 64 × `first`), each with a random jitter of up
/// to its own length, so workers that failed together do not retry together.
pub fn exponential(first: Duration, times: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(first * 64)
        .with_max_times(times)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_jitter_and_stop_after_times() {
        let delays: Vec<Duration> = exponential(Duration::from_millis(10), 4).build().collect();
        assert_eq!(delays.len(), 4);
        for (k, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(10 << k);
            assert!(*d >= base && *d <= base * 2, "delay {k}: {d:?}");
        }
    }

    #[tokio::test]
    async fn a_call_is_tried_again_until_it_succeeds() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let out = (|| async {
            match tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 | 1 => Err("not yet"),
                n => Ok(n),
            }
        })
        .retry(exponential(Duration::from_millis(1), 5))
        .await;
        assert_eq!(out, Ok(2));
    }
}
