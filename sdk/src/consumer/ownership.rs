//! Which partitions this member owns, told by the group's rebalance callbacks.
//!
//! Each partition has a generation that moves on when the group takes the partition away. A
//! partition task remembers the generation it was started for and stops taking records (and
//! storing offsets) once it is out of date, so a revoked partition's queued records are not
//! handled here while its new owner handles them; the poll loop starts a fresh task, after the
//! old one finished its record in hand, when the partition comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use tokio::sync::watch;

use crate::kafka::KafkaContext;

/// A topic and partition.
pub(crate) type PartitionKey = (String, i32);

#[derive(Debug)]
pub(crate) struct Ownership {
    generations: Mutex<HashMap<PartitionKey, u64>>,
    /// Moves on at every revoke, so a task waiting (for a due time, a back-off) wakes up to
    /// check whether its partition is still its own.
    revokes: watch::Sender<u64>,
}

impl Default for Ownership {
    fn default() -> Self {
        Self {
            generations: Mutex::default(),
            revokes: watch::Sender::new(0),
        }
    }
}

impl Ownership {
    pub(crate) fn generation(&self, key: &PartitionKey) -> u64 {
        self.lock().get(key).copied().unwrap_or(0)
    }

    pub(crate) fn revokes(&self) -> watch::Receiver<u64> {
        self.revokes.subscribe()
    }

    fn revoke<'a>(&self, keys: impl IntoIterator<Item = (&'a str, i32)>) {
        let mut generations = self.lock();
        for (topic, partition) in keys {
            *generations
                .entry((topic.to_string(), partition))
                .or_default() += 1;
        }
        drop(generations);
        self.revokes.send_modify(|n| *n += 1);
    }

    /// Every partition this member has known is taken away (librdkafka unassigns all on a
    /// rebalance error).
    fn revoke_all(&self) {
        let mut generations = self.lock();
        for generation in generations.values_mut() {
            *generation += 1;
        }
        drop(generations);
        self.revokes.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, u64>> {
        self.generations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shared client context (logs, MSK IAM tokens) plus the rebalance callback.
pub(crate) struct OwnershipContext {
    pub(crate) inner: KafkaContext,
    pub(crate) ownership: Arc<Ownership>,
}

impl ClientContext for OwnershipContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.inner.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.inner.generate_oauth_token(oauthbearer_config)
    }
}

impl ConsumerContext for OwnershipContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.ownership.revoke(
                    partitions
                        .elements()
                        .iter()
                        .map(|p| (p.topic(), p.partition())),
                );
                tracing::info!(partitions = partitions.count(), "partitions revoked");
            }
            Rebalance::Error(error) => {
                self.ownership.revoke_all();
                tracing::warn!(%error, "rebalance error; every partition treated as revoked");
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka keeps an application's pause across a revoke and a new assignment: a
        // partition paused for a full queue must not come back paused.
        if let Rebalance::Assign(partitions) = rebalance
            && let Err(error) = consumer.resume(partitions)
        {
            tracing::warn!(%error, "could not resume the assigned partitions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_moves_only_the_revoked_partitions_on_and_wakes_waiters() {
        let ownership = Ownership::default();
        let mut revokes = ownership.revokes();
        let a = ("orders".to_string(), 0);
        let b = ("orders".to_string(), 1);
        assert_eq!(ownership.generation(&a), 0);
        ownership.revoke([("orders", 0)]);
        assert_eq!(ownership.generation(&a), 1);
        assert_eq!(ownership.generation(&b), 0);
        assert!(revokes.has_changed().unwrap());
        revokes.mark_unchanged();
        ownership.revoke([("orders", 1)]);
        ownership.revoke_all();
        assert_eq!(ownership.generation(&a), 2);
        assert_eq!(ownership.generation(&b), 2);
    }
}
