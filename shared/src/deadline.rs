//! The invocation deadline Lambda gives a function, as an `Instant` to budget work against.

use std::time::{Duration, Instant};

/// Any epoch-milliseconds deadline is far above this (2001-01-01); smaller values are a
/// duration. cargo-lambda's emulator sends the remaining time rather than an epoch timestamp.
const EPOCH_MS_FLOOR: u64 = 978_307_200_000;

/// `deadline_ms` from the Lambda context (`Lambda-Runtime-Deadline-Ms`) as an `Instant`.
pub fn from_lambda_ms(deadline_ms: u64) -> Instant {
    let remaining = if deadline_ms < EPOCH_MS_FLOOR {
        Duration::from_millis(deadline_ms)
    } else {
        let now_ms = wire::clock::now_ms();
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    Instant::now() + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_relative_deadlines() {
        let now_ms = wire::clock::now_ms();
        let in_a_minute = from_lambda_ms(now_ms + 60_000).saturating_duration_since(Instant::now());
        assert!(in_a_minute > Duration::from_secs(55) && in_a_minute <= Duration::from_secs(60));
        let relative = from_lambda_ms(600_000).saturating_duration_since(Instant::now());
        assert!(relative > Duration::from_secs(595));
        let past = from_lambda_ms(now_ms - 1000).saturating_duration_since(Instant::now());
        assert_eq!(past, Duration::ZERO);
    }
}
