//! Retry and back-off policies, built on `backon` (the maintained successor of `backoff`).
//!
//! Only domain-level waits live here. The AWS SDK and librdkafka already retry their own
//! requests; wrapping them again would multiply delays.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays between checks of whether a diverted key's events have all left the standby table:
/// soon at first (an outage may be short), then at most every `max` (plus jitter).
pub fn standby_recheck(max: Duration) -> impl Iterator<Item = Duration> + Send {
    persistent(Duration::from_millis(200).min(max), max)
}

/// Delays between attempts at something that must succeed eventually (a consumer forwarding a
/// record it may not drop, or waiting for the schema registry): from `min`, doubling, at most
/// `max` (plus jitter), without end.
pub fn persistent(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Delays before resending the part of a DynamoDB batch request that came back unprocessed
/// (throttling); about 3 s in all before giving up.
pub fn unprocessed_items() -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .with_max_times(6)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recheck_grows_and_is_capped() {
        let delays: Vec<Duration> = standby_recheck(Duration::from_secs(5)).take(20).collect();
        assert_eq!(delays.len(), 20);
        assert!(delays[0] < Duration::from_millis(500));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[19] >= Duration::from_secs(5));
    }
}
