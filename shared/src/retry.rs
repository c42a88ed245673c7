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
    doubling(first, first * 64)
        .with_max_times(times)
        .with_jitter()
}

/// The delay after `attempt` earlier waits (0: the first wait): `first` doubled `attempt` times,
/// at most `max`, without jitter. For a wait counted across messages (a requeued delivery carries
/// its count), where no schedule lives from one try to the next.
pub fn nth_delay(first: Duration, max: Duration, attempt: u32) -> Duration {
    doubling(first, max)
        .build()
        .nth(attempt.min(64) as usize)
        .unwrap_or(max)
}

/// The schedule both draw from: `first`, doubling, at most `max`, as long as asked.
fn doubling(first: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .without_max_times()
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

    #[test]
    fn the_nth_delay_doubles_without_jitter_up_to_its_max() {
        let s = Duration::from_secs;
        let delays: Vec<Duration> = (0..8).map(|n| nth_delay(s(30), s(960), n)).collect();
        assert_eq!(
            delays,
            [30, 60, 120, 240, 480, 960, 960, 960].map(s).to_vec()
        );
        assert_eq!(nth_delay(s(2), s(120), u32::MAX), s(120));
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
