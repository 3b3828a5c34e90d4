//! What a consumer does with a record whose handler failed: try again in place, forward it to
//! the next retry topic, or dead-letter it. Plain decisions, tested without Kafka.
//!
//! The design is Uber's retry topics (as in wix/greyhound): a few quick **blocking** attempts
//! (the partition waits, so per-key order holds), then **non-blocking** retry topics
//! `{topic}-retry-1`, `{topic}-retry-2`, … each read after a longer delay (the main partition
//! moves on; that key's order is given up for that record), then the dead-letter topic. A
//! non-retriable error or an invalid event goes to the dead-letter topic at once.

use std::time::Duration;

/// How failures are retried; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in place, the first included, before the record leaves its partition (at
    /// least 1).
    pub blocking_attempts: u32,
    /// Pause before the second attempt in place; doubled for each further one, up to
    /// `max_blocking_backoff`.
    pub blocking_backoff: Duration,
    pub max_blocking_backoff: Duration,
    /// One retry topic per entry, in order: how long after the failure the record is tried
    /// again from it. Empty: dead-lettered after the blocking attempts, and each key's order
    /// holds through retries.
    pub delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// Three attempts in place (100 ms, then 200 ms apart), then retry topics after 10 s and
    /// 1 min, then the dead-letter topic.
    fn default() -> Self {
        Self {
            blocking_attempts: 3,
            blocking_backoff: Duration::from_millis(100),
            max_blocking_backoff: Duration::from_secs(10),
            delays: vec![Duration::from_secs(10), Duration::from_secs(60)],
        }
    }
}

/// Why a handler did not handle an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Might work later (a dependency timed out, a lock was busy).
    Retriable(String),
    /// Never will (the event breaks a business rule): dead-lettered at once.
    NonRetriable(String),
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retriable(reason) => write!(f, "retriable: {reason}"),
            Self::NonRetriable(reason) => write!(f, "non-retriable: {reason}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Try again in place after this pause.
    TryAgainAfter(Duration),
    /// Send it to retry topic `level` (1-based), due `delay` from now.
    Forward {
        level: usize,
        delay: Duration,
    },
    DeadLetter,
}

impl RetryPolicy {
    /// The step after the `attempts_here`-th failed attempt in place (1-based) of a record read
    /// from retry level `level` (0: the main topic).
    pub fn after_failure(
        &self,
        error: &HandlerError,
        attempts_here: u32,
        level: usize,
    ) -> NextStep {
        if matches!(error, HandlerError::NonRetriable(_)) {
            return NextStep::DeadLetter;
        }
        if attempts_here < self.blocking_attempts.max(1) {
            let doublings = attempts_here.saturating_sub(1).min(16);
            let pause = self.blocking_backoff.saturating_mul(1 << doublings);
            return NextStep::TryAgainAfter(pause.min(self.max_blocking_backoff));
        }
        match self.delays.get(level) {
            Some(delay) => NextStep::Forward {
                level: level + 1,
                delay: *delay,
            },
            None => NextStep::DeadLetter,
        }
    }

    /// The retry topics of `topic`, in order.
    pub fn retry_topics(&self, topic: &str) -> Vec<String> {
        (1..=self.delays.len())
            .map(|level| retry_topic(topic, level))
            .collect()
    }
}

/// The name of `topic`'s retry topic `level` (1-based).
pub fn retry_topic(topic: &str, level: usize) -> String {
    format!("{topic}-retry-{level}")
}

/// Which of `topics` `name` is a retry topic of, and at which level; `(name, 0)` for a topic of
/// `topics` itself; `None` for any other name.
pub fn origin_of<'a>(name: &str, topics: &'a [String]) -> Option<(&'a str, usize)> {
    if let Some(topic) = topics.iter().find(|t| *t == name) {
        return Some((topic, 0));
    }
    topics.iter().find_map(|topic| {
        let level = name.strip_prefix(topic.as_str())?.strip_prefix("-retry-")?;
        let level: usize = level.parse().ok().filter(|l| *l > 0)?;
        Some((topic.as_str(), level))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            blocking_attempts: 3,
            blocking_backoff: Duration::from_millis(100),
            max_blocking_backoff: Duration::from_millis(150),
            delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
        }
    }

    #[test]
    fn retriable_failures_go_blocking_then_through_each_retry_topic_then_dead_letter() {
        let policy = policy();
        let busy = HandlerError::Retriable("busy".into());
        assert_eq!(
            policy.after_failure(&busy, 1, 0),
            NextStep::TryAgainAfter(Duration::from_millis(100))
        );
        assert_eq!(
            policy.after_failure(&busy, 2, 0),
            NextStep::TryAgainAfter(Duration::from_millis(150)),
            "capped"
        );
        assert_eq!(
            policy.after_failure(&busy, 3, 0),
            NextStep::Forward {
                level: 1,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(
            policy.after_failure(&busy, 3, 1),
            NextStep::Forward {
                level: 2,
                delay: Duration::from_secs(5)
            }
        );
        assert_eq!(policy.after_failure(&busy, 3, 2), NextStep::DeadLetter);
    }

    #[test]
    fn non_retriable_failures_are_dead_lettered_at_once() {
        let bad = HandlerError::NonRetriable("no such account".into());
        assert_eq!(policy().after_failure(&bad, 1, 0), NextStep::DeadLetter);
    }

    #[test]
    fn blocking_only_never_forwards() {
        let policy = RetryPolicy {
            delays: vec![],
            ..policy()
        };
        let busy = HandlerError::Retriable("busy".into());
        assert_eq!(policy.after_failure(&busy, 3, 0), NextStep::DeadLetter);
        assert!(policy.retry_topics("orders").is_empty());
    }

    #[test]
    fn retry_topic_names_map_back_to_their_topic_and_level() {
        let topics = vec!["orders".to_string(), "orders-retry".to_string()];
        assert_eq!(retry_topic("orders", 2), "orders-retry-2");
        assert_eq!(origin_of("orders", &topics), Some(("orders", 0)));
        assert_eq!(origin_of("orders-retry-2", &topics), Some(("orders", 2)));
        assert_eq!(
            origin_of("orders-retry", &topics),
            Some(("orders-retry", 0))
        );
        assert_eq!(origin_of("orders-retry-0", &topics), None);
        assert_eq!(origin_of("payments", &topics), None);
    }
}
