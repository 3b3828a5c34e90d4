//! The republishing rules, over two small ports ([`Sink`] for Kafka, [`Table`] for DynamoDB) so
//! they are unit-tested without AWS or Kafka. The stream handler and the sweep both use it.
//!
//! For a batch of entries in stream order:
//! 1. Entries are grouped into chains by partition key ([`crate::entry::chains`]). Chains run
//!    concurrently; inside a chain each entry waits for the previous one's ack, so a key's
//!    events reach Kafka in stream order and an event is never published ahead of an earlier
//!    event of its key that failed.
//! 2. Each entry is published (or, when Kafka rejects it for good or it is malformed,
//!    dead-lettered). An entry is started only while the invocation has room for a full
//!    delivery timeout, so no message is in flight when the handler returns.
//! 3. The first retriable failure (lowest position) is the batch's failure point. Entries after
//!    it are not started (they will be delivered again), and nothing at or after it is deleted.
//! 4. Entries before it are deleted from the table in stream order; a delete that fails moves
//!    the failure point back to that entry.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::KafkaError;
use shared::classify::{Disposition, classify};
use shared::record::StandbyRecord;

use crate::dead_letter::{self, DeadLetter, ErrorClass};
use crate::entry::{Entry, ItemKey, SkipReason, Work, chains};

/// Publishes to Kafka; each future resolves when the broker acked or the delivery failed.
pub trait Sink: Sync {
    fn republish(
        &self,
        record: &StandbyRecord,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send;
    fn dead_letter(
        &self,
        letter: DeadLetter,
    ) -> impl Future<Output = Result<(), KafkaError>> + Send;
}

/// Deletes standby items.
pub trait Table: Sync {
    /// Deletes `keys`, earliest first; on failure says which is the first one not deleted.
    fn delete(&self, keys: &[ItemKey]) -> impl Future<Output = Result<(), DeleteFailure>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// Index into the `keys` slice.
    pub first_not_deleted: usize,
    pub reason: String,
}

/// How long the invocation may keep starting deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Instant,
    /// The producer's `message.timeout.ms`: every started delivery resolves within it.
    pub delivery_timeout: Duration,
    /// Room kept after the last delivery for deletes and the response.
    pub margin: Duration,
}

impl Budget {
    /// Whether a delivery started now would resolve before the margin.
    pub fn has_room(&self) -> bool {
        Instant::now() + self.delivery_timeout + self.margin <= self.deadline
    }
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Skipped(SkipReason),
    Republished {
        latency: Duration,
    },
    DeadLettered {
        reason: String,
    },
    /// Kafka rejects it and the dead-letter topic rejects it too: left in the table for an
    /// operator (and the next sweep) rather than blocking its shard.
    Stranded {
        reason: String,
    },
    /// Retriable: the batch is reported failed from the first such entry.
    Failed {
        reason: String,
    },
    /// Not started because an earlier entry failed; it will be delivered again.
    NotAttempted,
}

impl Outcome {
    fn is_failure(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }

    fn needs_delete(&self) -> bool {
        matches!(self, Self::Republished { .. } | Self::DeadLettered { .. })
    }
}

/// The result of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// By position.
    pub outcomes: Vec<Outcome>,
    /// Position of the first entry that is not done; everything before it is done.
    pub first_failure: Option<usize>,
    pub deleted: usize,
}

impl Report {
    pub fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| matches(o)).count()
    }
}

/// Runs the rules above over `entries` (positions must be 0..n in order).
pub async fn process<S: Sink, T: Table>(
    entries: &[Entry],
    sink: &S,
    table: &T,
    budget: &Budget,
) -> Report {
    let first_failure = AtomicUsize::new(usize::MAX);
    let chain_results = join_all(
        chains(entries)
            .into_iter()
            .map(|chain| run_chain(entries, chain, sink, budget, &first_failure)),
    )
    .await;

    let mut outcomes = vec![Outcome::NotAttempted; entries.len()];
    for (position, outcome) in chain_results.into_iter().flatten() {
        outcomes[position] = outcome;
    }
    let mut first_failure = Some(first_failure.into_inner()).filter(|p| *p != usize::MAX);

    let done = first_failure.unwrap_or(entries.len());
    let (positions, keys): (Vec<usize>, Vec<ItemKey>) = entries[..done]
        .iter()
        .filter(|e| outcomes[e.position].needs_delete())
        .filter_map(|e| e.key.clone().map(|k| (e.position, k)))
        .unzip();
    let mut deleted = keys.len();
    if !keys.is_empty()
        && let Err(failure) = table.delete(&keys).await
    {
        let position = positions[failure.first_not_deleted];
        tracing::warn!(event_id = entries[position].event_id(), reason = %failure.reason, "delete failed after publishing; the batch is retried from this record");
        outcomes[position] = Outcome::Failed {
            reason: format!(
                "published, but deleting the item failed: {}",
                failure.reason
            ),
        };
        deleted = failure.first_not_deleted;
        first_failure = Some(first_failure.map_or(position, |f| f.min(position)));
    }
    Report {
        outcomes,
        first_failure,
        deleted,
    }
}

async fn run_chain<S: Sink>(
    entries: &[Entry],
    chain: Vec<usize>,
    sink: &S,
    budget: &Budget,
    first_failure: &AtomicUsize,
) -> Vec<(usize, Outcome)> {
    let mut results = Vec::with_capacity(chain.len());
    let mut stopped = false;
    for position in chain {
        if stopped || position > first_failure.load(Ordering::Acquire) {
            stopped = true;
            results.push((position, Outcome::NotAttempted));
            continue;
        }
        let entry = &entries[position];
        let outcome = run_entry(entry, sink, budget).await;
        if outcome.is_failure() {
            first_failure.fetch_min(position, Ordering::AcqRel);
            stopped = true;
        }
        results.push((position, outcome));
    }
    results
}

async fn run_entry<S: Sink>(entry: &Entry, sink: &S, budget: &Budget) -> Outcome {
    let event_id = entry.event_id();
    match &entry.work {
        Work::Skip(reason) => {
            if *reason == SkipReason::ExpiredByTtl {
                tracing::error!(
                    event_id,
                    "DynamoDB TTL removed an event that was never republished"
                );
            }
            Outcome::Skipped(*reason)
        }
        _ if !budget.has_room() => {
            tracing::warn!(
                event_id,
                "not started: the invocation has no room left for a full delivery timeout"
            );
            Outcome::Failed {
                reason: "invocation time budget exhausted".into(),
            }
        }
        Work::Publish(record) => {
            let started = Instant::now();
            match sink.republish(record).await {
                Ok(()) => Outcome::Republished {
                    latency: started.elapsed(),
                },
                Err(error) => match classify(&error) {
                    Disposition::Retriable => {
                        tracing::warn!(event_id, topic = %record.topic, %error, "republish failed; will retry");
                        Outcome::Failed {
                            reason: error.to_string(),
                        }
                    }
                    Disposition::NonRetriable => {
                        send_dead_letter(entry, &error.to_string(), ErrorClass::NonRetriable, sink)
                            .await
                    }
                },
            }
        }
        Work::Malformed { reason, .. } => {
            send_dead_letter(entry, reason, ErrorClass::Malformed, sink).await
        }
    }
}

async fn send_dead_letter<S: Sink>(
    entry: &Entry,
    reason: &str,
    class: ErrorClass,
    sink: &S,
) -> Outcome {
    let event_id = entry.event_id();
    let topic = entry.topic().unwrap_or("unknown");
    match sink
        .dead_letter(dead_letter::for_entry(entry, reason, class))
        .await
    {
        Ok(()) => {
            tracing::error!(
                event_id,
                topic,
                reason,
                class = class.as_str(),
                "dead-lettered"
            );
            Outcome::DeadLettered {
                reason: reason.to_string(),
            }
        }
        Err(error) if classify(&error) == Disposition::Retriable => {
            tracing::warn!(event_id, topic, reason, %error, "dead-letter topic unavailable; will retry");
            Outcome::Failed {
                reason: format!("dead-letter topic unavailable: {error}"),
            }
        }
        Err(error) => {
            tracing::error!(event_id, topic, reason, %error, "the dead-letter topic rejects this record too; it stays in the standby table");
            Outcome::Stranded {
                reason: format!("{reason}; dead-letter topic: {error}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use proptest::prelude::*;
    use rdkafka::types::RDKafkaErrorCode;
    use serde_json::json;
    use shared::record::EventId;

    use super::*;

    /// A sink that records what it published and fails the event ids it is told to.
    #[derive(Default)]
    struct FakeSink {
        published: Mutex<Vec<String>>,
        dead_letters: Mutex<Vec<DeadLetter>>,
        fail: HashMap<String, RDKafkaErrorCode>,
        dead_letter_fails: Option<RDKafkaErrorCode>,
    }

    impl Sink for FakeSink {
        async fn republish(&self, record: &StandbyRecord) -> Result<(), KafkaError> {
            // Yield so chains genuinely interleave.
            tokio::task::yield_now().await;
            let id = record.event_id.to_string();
            if let Some(code) = self.fail.get(&id) {
                return Err(KafkaError::MessageProduction(*code));
            }
            self.published.lock().unwrap().push(id);
            Ok(())
        }

        async fn dead_letter(&self, letter: DeadLetter) -> Result<(), KafkaError> {
            if let Some(code) = self.dead_letter_fails {
                return Err(KafkaError::MessageProduction(code));
            }
            self.dead_letters.lock().unwrap().push(letter);
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeTable {
        deleted: Mutex<Vec<ItemKey>>,
        fail_at: Option<String>,
    }

    impl Table for FakeTable {
        async fn delete(&self, keys: &[ItemKey]) -> Result<(), DeleteFailure> {
            for (i, key) in keys.iter().enumerate() {
                if self.fail_at.as_deref() == Some(key.event_id.as_str()) {
                    return Err(DeleteFailure {
                        first_not_deleted: i,
                        reason: "throttled".into(),
                    });
                }
                self.deleted.lock().unwrap().push(key.clone());
            }
            Ok(())
        }
    }

    fn budget() -> Budget {
        Budget {
            deadline: Instant::now() + Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(5),
            margin: Duration::from_secs(1),
        }
    }

    fn publish(position: usize, key: &str) -> Entry {
        let record = StandbyRecord {
            event_id: EventId::new(),
            topic: "t".into(),
            key: Some(key.as_bytes().to_vec()),
            value: vec![position as u8],
            headers: vec![],
            producer_id: "p".into(),
            created_at_ms: 0,
            expires_at: 0,
        };
        Entry {
            position,
            sequence_number: Some(format!("seq-{position}")),
            key: Some(ItemKey {
                pk: record.partition_key(),
                event_id: record.event_id.to_string(),
            }),
            work: Work::Publish(Box::new(record)),
        }
    }

    fn id(entry: &Entry) -> String {
        entry.event_id().to_string()
    }

    #[tokio::test]
    async fn all_good_everything_published_and_deleted_in_order() {
        let entries: Vec<Entry> = (0..6).map(|i| publish(i, ["a", "b"][i % 2])).collect();
        let (sink, table) = (FakeSink::default(), FakeTable::default());
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert_eq!(report.deleted, 6);
        let deleted: Vec<String> = table
            .deleted
            .lock()
            .unwrap()
            .iter()
            .map(|k| k.event_id.clone())
            .collect();
        assert_eq!(
            deleted,
            entries.iter().map(id).collect::<Vec<_>>(),
            "deletes in stream order"
        );
    }

    #[tokio::test]
    async fn a_failure_in_the_middle_stops_its_key_and_nothing_after_it_is_deleted() {
        let keys = ["a", "b", "a", "c", "a", "b", "c"];
        let entries: Vec<Entry> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| publish(i, k))
            .collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[2]), RDKafkaErrorCode::MessageTimedOut)]),
            ..Default::default()
        };
        let table = FakeTable::default();
        let report = process(&entries, &sink, &table, &budget()).await;

        assert_eq!(report.first_failure, Some(2));
        let published = sink.published.lock().unwrap().clone();
        assert!(
            !published.contains(&id(&entries[4])),
            "a's later event never overtakes the failed one"
        );
        assert_eq!(report.outcomes[4], Outcome::NotAttempted);
        let deleted: HashSet<String> = table
            .deleted
            .lock()
            .unwrap()
            .iter()
            .map(|k| k.event_id.clone())
            .collect();
        assert_eq!(deleted, HashSet::from([id(&entries[0]), id(&entries[1])]));
    }

    #[tokio::test]
    async fn rejected_records_are_dead_lettered_and_deleted_without_failing_the_batch() {
        let entries: Vec<Entry> = (0..3).map(|i| publish(i, "a")).collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[1]), RDKafkaErrorCode::MessageSizeTooLarge)]),
            ..Default::default()
        };
        let table = FakeTable::default();
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert!(matches!(report.outcomes[1], Outcome::DeadLettered { .. }));
        assert_eq!(report.deleted, 3);
        let letters = sink.dead_letters.lock().unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].value, vec![1]);
    }

    #[tokio::test]
    async fn malformed_records_go_to_the_dead_letter_topic() {
        let mut entries = vec![publish(0, "a")];
        entries.push(Entry {
            position: 1,
            sequence_number: Some("seq-1".into()),
            key: Some(ItemKey {
                pk: "t#k#x".into(),
                event_id: "e".into(),
            }),
            work: Work::Malformed {
                raw: json!({"broken": true}),
                kind: "missing_attribute",
                reason: "attribute `topic` is missing".into(),
            },
        });
        let (sink, table) = (FakeSink::default(), FakeTable::default());
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert_eq!(report.deleted, 2);
        assert_eq!(
            sink.dead_letters.lock().unwrap()[0].value,
            br#"{"broken":true}"#.to_vec()
        );
    }

    #[tokio::test]
    async fn when_the_dead_letter_topic_refuses_the_record_stays_in_the_table() {
        let entries: Vec<Entry> = (0..2).map(|i| publish(i, "a")).collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[0]), RDKafkaErrorCode::UnknownTopicOrPartition)]),
            dead_letter_fails: Some(RDKafkaErrorCode::UnknownTopicOrPartition),
            ..Default::default()
        };
        let table = FakeTable::default();
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(
            report.first_failure, None,
            "a poison record never blocks the shard"
        );
        assert!(matches!(report.outcomes[0], Outcome::Stranded { .. }));
        assert_eq!(report.deleted, 1, "only the republished one is deleted");
    }

    #[tokio::test]
    async fn an_unavailable_dead_letter_topic_is_a_retriable_failure() {
        let entries: Vec<Entry> = (0..2).map(|i| publish(i, "a")).collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[0]), RDKafkaErrorCode::InvalidRecord)]),
            dead_letter_fails: Some(RDKafkaErrorCode::MessageTimedOut),
            ..Default::default()
        };
        let report = process(&entries, &sink, &FakeTable::default(), &budget()).await;
        assert_eq!(report.first_failure, Some(0));
    }

    #[tokio::test]
    async fn no_time_left_means_nothing_is_started() {
        let entries: Vec<Entry> = (0..3).map(|i| publish(i, ["a", "b", "c"][i])).collect();
        let tight = Budget {
            deadline: Instant::now() + Duration::from_secs(2),
            ..budget()
        };
        let sink = FakeSink::default();
        let report = process(&entries, &sink, &FakeTable::default(), &tight).await;
        assert_eq!(report.first_failure, Some(0));
        assert!(sink.published.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_delete_moves_the_failure_point_back() {
        let entries: Vec<Entry> = (0..4).map(|i| publish(i, ["a", "b"][i % 2])).collect();
        let sink = FakeSink::default();
        let table = FakeTable {
            fail_at: Some(id(&entries[1])),
            ..Default::default()
        };
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, Some(1));
        assert_eq!(report.deleted, 1);
        assert!(matches!(report.outcomes[1], Outcome::Failed { .. }));
    }

    proptest! {
        /// Over random batches and random failures: per key, what reached Kafka is the key's
        /// events in stream order up to (not including) its first failure; everything before
        /// the failure point is done; nothing at or after it is deleted.
        #[test]
        fn ordering_and_completeness(
            keys in prop::collection::vec(0u8..6, 1..60),
            failures in prop::collection::vec(prop::bool::weighted(0.1), 60),
        ) {
            let entries: Vec<Entry> = keys.iter().enumerate().map(|(i, k)| publish(i, &k.to_string())).collect();
            let fail: HashMap<String, RDKafkaErrorCode> = entries
                .iter()
                .zip(&failures)
                .filter(|(_, fails)| **fails)
                .map(|(e, _)| (id(e), RDKafkaErrorCode::MessageTimedOut))
                .collect();
            let sink = FakeSink { fail: fail.clone(), ..Default::default() };
            let table = FakeTable::default();
            let report = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(process(&entries, &sink, &table, &budget()));

            let expected_first = entries.iter().position(|e| fail.contains_key(&id(e)));
            prop_assert_eq!(report.first_failure, expected_first);
            let cut = report.first_failure.unwrap_or(entries.len());
            let published = sink.published.lock().unwrap().clone();
            for key in 0u8..6 {
                let of_key: Vec<String> = entries.iter().filter(|e| keys[e.position] == key).map(id).collect();
                let got: Vec<String> = published.iter().filter(|p| of_key.contains(p)).cloned().collect();
                let stop = of_key.iter().position(|i| fail.contains_key(i)).unwrap_or(of_key.len());
                prop_assert!(got.len() <= stop);
                prop_assert_eq!(&got[..], &of_key[..got.len()]);
            }
            let deleted: Vec<String> = table.deleted.lock().unwrap().iter().map(|k| k.event_id.clone()).collect();
            let before_cut: Vec<String> = entries[..cut].iter().map(id).collect();
            prop_assert_eq!(deleted, before_cut);
        }
    }
}
