//! The republishing rules, over two small ports ([`Sink`] for Kafka, [`Table`] for DynamoDB) so
//! they are unit-tested without AWS or Kafka. The stream handler, the sweep and the operator's
//! replay all publish through [`process`].
//!
//! For a batch of entries in stream order:
//! 1. Entries are grouped into chains by partition key ([`crate::entry::chains`]); chains run
//!    concurrently.
//! 2. **The order gate.** A keyed chain does not trust the batch to hold its key's earlier events:
//!    the stream orders records per item, not per key (a key's items can be on different shards),
//!    the event source mapping gives up on old records, and a sweep page can end inside a key. So
//!    it reads the key's backlog from the table (strongly consistent: every item of the key up to
//!    the batch's latest one) and publishes that, oldest event id first, each after the previous
//!    one's ack. Batch records whose item is gone were published by another path already and are
//!    skipped. The table is the source of truth; a record is only the signal to look.
//! 3. An entry is started only while the invocation has room for a full delivery timeout, so no
//!    message is in flight when the handler returns.
//! 4. A retriable failure of the cluster (brokers down, timeouts) stops its chain, and the first
//!    such position is the batch's failure point: entries after it are not started (they will be
//!    delivered again).
//! 5. A failure that concerns one key only — its topic refuses us (authorization), or the record
//!    is stranded (the topic and the dead-letter topic both reject it) — **holds the key**: its
//!    chain stops there, its items stay in the table in order, and the batch goes on for every
//!    other key. The sweep retries held keys ([`crate::held`]).
//! 6. Every item published (acked) or dead-lettered is deleted, in order, each once; a delete
//!    that fails moves the failure point back to its entry.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::KafkaError;
use sdk::classify::{self, Disposition, classify};
use tokio::sync::Semaphore;
use wire::dead_letter::ErrorClass;
use wire::record::StandbyRecord;

use crate::dead_letter::{self, DeadLetter};
use crate::entry::{ChainKey, Entry, ItemKey, SkipReason, Work, chains};

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
    /// Whether a fresh metadata request confirms that `topic` does not exist; `false` when it
    /// exists or the request fails, so a "missing topic" during a broker restart is retried.
    fn topic_is_missing(&self, topic: &str) -> impl Future<Output = bool> + Send;
    /// Why events of `topic` may not be published at all (it is not on the topic allow-list,
    /// [`shared::topics`]), or `None` when they may.
    fn refuses(&self, topic: &str) -> Option<String>;
}

/// Reads and deletes standby items.
pub trait Table: Sync {
    /// Deletes `keys`, earliest first; on failure says which is the first one not deleted.
    fn delete(&self, keys: &[ItemKey]) -> impl Future<Output = Result<(), DeleteFailure>> + Send;
    /// Up to `limit` items of partition key `pk` whose event id sorts after `after` (from the
    /// first when `None`) and at or before `up_to`, oldest first, read strongly consistent, as
    /// entries (their positions mean nothing), and whether more may follow this page.
    fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<Entry>, bool), String>> + Send;
    /// The event ids of the page [`Table::backlog`] would return, without the events.
    fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<String>, bool), String>> + Send;
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
    /// operator, and its key is held behind it.
    Stranded {
        reason: String,
    },
    /// Its key is held (at this entry or an earlier one of the key) for a reason that concerns
    /// the key only; it stays in the table and the batch goes on.
    Held {
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
    fn needs_delete(&self) -> bool {
        matches!(self, Self::Republished { .. } | Self::DeadLettered { .. })
    }
}

/// A key held back, and the event it is held at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    pub pk: String,
    pub event_id: String,
    pub reason: String,
}

/// The result of one batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// By position.
    pub outcomes: Vec<Outcome>,
    /// Position of the first entry that is not done; everything before it is done (or held).
    pub first_failure: Option<usize>,
    pub deleted: usize,
    /// Events that were not in the batch but waited in the table ahead of a batch record of
    /// their key, republished first by the order gate.
    pub from_backlog: usize,
    pub held: Vec<HeldKey>,
}

impl Report {
    pub fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| matches(o)).count()
    }
}

/// Items read per backlog page: a key's backlog can be the whole of a long outage.
const BACKLOG_PAGE: usize = 500;

/// Backlog reads in flight at once, across a batch's chains. Unbounded, a batch of many keys
/// sends all its reads at the same moment; measured on the local stack (200 keys × 5 records),
/// unbounded: 742 records/s, 32: 1,071, 8: 1,137, 2: 1,104. At DynamoDB's few milliseconds per
/// Query, 8 in flight serve well over a thousand keys a second, more than one shard's batch needs.
const BACKLOG_READS_IN_FLIGHT: usize = 8;

/// The table with its backlog reads bounded to [`BACKLOG_READS_IN_FLIGHT`].
struct BoundedReads<'a, T> {
    table: &'a T,
    permits: Semaphore,
}

impl<T: Table> BoundedReads<'_, T> {
    async fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        self.table.backlog(pk, after, up_to, limit).await
    }

    async fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        self.table.backlog_ids(pk, after, up_to, limit).await
    }
}

/// What one chain did.
#[derive(Default)]
struct ChainRun {
    outcomes: Vec<(usize, Outcome)>,
    /// Items to delete, each with the batch position it is accounted to.
    done: Vec<(usize, ItemKey)>,
    from_backlog: usize,
    held: Vec<HeldKey>,
}

/// Runs the rules above over `entries` (positions must be 0..n in order).
pub async fn process<S: Sink, T: Table>(
    entries: &[Entry],
    sink: &S,
    table: &T,
    budget: &Budget,
) -> Report {
    let first_failure = AtomicUsize::new(usize::MAX);
    let reads = BoundedReads {
        table,
        permits: Semaphore::new(BACKLOG_READS_IN_FLIGHT),
    };
    let runs = join_all(
        chains(entries)
            .into_iter()
            .map(|chain| run_chain(entries, chain, sink, &reads, budget, &first_failure)),
    )
    .await;

    let mut report = Report {
        outcomes: vec![Outcome::NotAttempted; entries.len()],
        ..Report::default()
    };
    let mut done = Vec::new();
    for run in runs {
        for (position, outcome) in run.outcomes {
            report.outcomes[position] = outcome;
        }
        done.extend(run.done);
        report.from_backlog += run.from_backlog;
        report.held.extend(run.held);
    }
    let mut first_failure = Some(first_failure.into_inner()).filter(|p| *p != usize::MAX);

    // Every item Kafka acked (or the dead-letter topic took) is deleted, also past the failure
    // point: its record, delivered again, then finds it gone and is skipped, and a key's long
    // backlog makes progress across invocations. In batch order (a chain's items are already in
    // event-id order and keep it), each item once: an INSERT and a MODIFY of one item must not
    // put its key twice in one request.
    done.sort_by_key(|(position, _)| *position);
    let mut seen = HashSet::new();
    done.retain(|(_, key)| seen.insert(key.clone()));
    let (positions, keys): (Vec<usize>, Vec<ItemKey>) = done.into_iter().unzip();

    report.deleted = keys.len();
    if !keys.is_empty()
        && let Err(failure) = table.delete(&keys).await
    {
        let position = positions[failure.first_not_deleted];
        tracing::warn!(event_id = keys[failure.first_not_deleted].event_id, reason = %failure.reason, "delete failed after publishing; the batch is retried from this record");
        report.outcomes[position] = Outcome::Failed {
            reason: format!(
                "published, but deleting the item failed: {}",
                failure.reason
            ),
        };
        report.deleted = failure.first_not_deleted;
        first_failure = Some(first_failure.map_or(position, |f| f.min(position)));
    }
    report.first_failure = first_failure;
    report
}

async fn run_chain<S: Sink, T: Table>(
    entries: &[Entry],
    chain: Vec<usize>,
    sink: &S,
    table: &BoundedReads<'_, T>,
    budget: &Budget,
    first_failure: &AtomicUsize,
) -> ChainRun {
    match entries[chain[0]].chain_key() {
        ChainKey::Partition(pk) => {
            run_keyed(entries, &chain, &pk, sink, table, budget, first_failure).await
        }
        ChainKey::Item(_) | ChainKey::Alone(_) => {
            // Later records of the same item share the first one's fate: publishing it again
            // would only make a duplicate.
            let mut run = run_alone(&entries[chain[0]], sink, budget, first_failure).await;
            if let Some((_, outcome)) = run.outcomes.first().cloned() {
                run.outcomes
                    .extend(chain[1..].iter().map(|&p| (p, outcome.clone())));
            }
            run
        }
    }
}

/// An entry without order to keep (a null-key event, or one whose key is unreadable).
async fn run_alone<S: Sink>(
    entry: &Entry,
    sink: &S,
    budget: &Budget,
    first_failure: &AtomicUsize,
) -> ChainRun {
    let mut run = ChainRun::default();
    if entry.position > first_failure.load(Ordering::Acquire) {
        run.outcomes.push((entry.position, Outcome::NotAttempted));
        return run;
    }
    let outcome = run_entry(entry, sink, budget).await;
    match (&outcome, &entry.key) {
        (Outcome::Failed { .. }, _) => {
            first_failure.fetch_min(entry.position, Ordering::AcqRel);
        }
        (o, Some(key)) if o.needs_delete() => run.done.push((entry.position, key.clone())),
        (Outcome::Held { reason } | Outcome::Stranded { reason }, Some(key)) => {
            run.held.push(HeldKey {
                pk: key.pk.clone(),
                event_id: key.event_id.clone(),
                reason: reason.clone(),
            });
        }
        _ => {}
    }
    run.outcomes.push((entry.position, outcome));
    run
}

/// A key's chain through the order gate: the key's backlog up to the batch's latest record of
/// it, read from the table and published oldest first.
async fn run_keyed<S: Sink, T: Table>(
    entries: &[Entry],
    chain: &[usize],
    pk: &str,
    sink: &S,
    table: &BoundedReads<'_, T>,
    budget: &Budget,
    first_failure: &AtomicUsize,
) -> ChainRun {
    let mut run = ChainRun::default();
    let mut triggers = Vec::new();
    for &position in chain {
        match &entries[position].work {
            Work::Skip(reason) => {
                log_skip(&entries[position], *reason);
                run.outcomes.push((position, Outcome::Skipped(*reason)));
            }
            _ => triggers.push(position),
        }
    }
    let Some(&first) = triggers.first() else {
        return run;
    };
    let id_of = |position: usize| entries[position].event_id();
    if first > first_failure.load(Ordering::Acquire) {
        run.outcomes
            .extend(triggers.iter().map(|&p| (p, Outcome::NotAttempted)));
        return run;
    }
    let up_to = triggers
        .iter()
        .map(|&p| id_of(p))
        .max()
        .expect("triggers is not empty");
    let carried: HashMap<&str, &Entry> =
        triggers.iter().map(|&p| (id_of(p), &entries[p])).collect();
    let mut settled: HashSet<usize> = HashSet::new();
    // Where the chain stopped, and what the batch records of that event and later become.
    let mut stop: Option<(String, Outcome)> = None;
    let mut after: Option<String> = None;
    'pages: loop {
        let (items, more) = match backlog_page(table, pk, after.as_deref(), up_to, &carried).await {
            Ok(page) => page,
            Err(reason) => {
                let event_id = id_of(first);
                tracing::warn!(event_id, %reason, "could not read the backlog of this event's key; will retry");
                tracing::debug!(partition_key = pk, "partition key of the event above");
                let pending = triggers
                    .iter()
                    .copied()
                    .filter(|p| !settled.contains(p))
                    .min()
                    .unwrap_or(first);
                first_failure.fetch_min(pending, Ordering::AcqRel);
                run.outcomes.push((
                    pending,
                    Outcome::Failed {
                        reason: format!("reading the key's backlog: {reason}"),
                    },
                ));
                settled.insert(pending);
                stop = Some((after.unwrap_or_default(), Outcome::NotAttempted));
                break 'pages;
            }
        };
        for item in &items {
            let Some(key) = &item.key else { continue };
            let id = key.event_id.as_str();
            // The earliest batch record that cannot be done before this item is.
            let Some(accounted_to) = triggers.iter().copied().filter(|&p| id_of(p) >= id).min()
            else {
                break 'pages;
            };
            if accounted_to > first_failure.load(Ordering::Acquire) {
                stop = Some((id.to_string(), Outcome::NotAttempted));
                break 'pages;
            }
            let same: Vec<usize> = triggers
                .iter()
                .copied()
                .filter(|&p| id_of(p) == id)
                .collect();
            // A malformed record is dead-lettered as the stream delivered it; any record keeps
            // its stream sequence number for the dead-letter context.
            let delivered = same.first().map(|&p| &entries[p]);
            let with_sequence;
            let entry = match delivered {
                Some(record) if matches!(record.work, Work::Malformed { .. }) => record,
                Some(record) => {
                    with_sequence = Entry {
                        sequence_number: record.sequence_number.clone(),
                        ..item.clone()
                    };
                    &with_sequence
                }
                None => item,
            };
            let outcome = run_entry(entry, sink, budget).await;
            for &p in &same {
                run.outcomes.push((p, outcome.clone()));
                settled.insert(p);
            }
            match &outcome {
                o if o.needs_delete() => {
                    run.done.push((accounted_to, key.clone()));
                    if same.is_empty() && matches!(o, Outcome::Republished { .. }) {
                        run.from_backlog += 1;
                    }
                }
                Outcome::Failed { .. } => {
                    first_failure.fetch_min(accounted_to, Ordering::AcqRel);
                    stop = Some((id.to_string(), Outcome::NotAttempted));
                    break 'pages;
                }
                Outcome::Held { reason } | Outcome::Stranded { reason } => {
                    run.held.push(HeldKey {
                        pk: pk.to_string(),
                        event_id: id.to_string(),
                        reason: reason.clone(),
                    });
                    let behind = Outcome::Held {
                        reason: format!("held behind event {id}: {reason}"),
                    };
                    stop = Some((id.to_string(), behind));
                    break 'pages;
                }
                _ => {}
            }
        }
        match items.last().and_then(|i| i.key.as_ref()) {
            Some(last) if more => after = Some(last.event_id.clone()),
            _ => break 'pages,
        }
    }
    for &position in &triggers {
        if settled.contains(&position) {
            continue;
        }
        let outcome = match &stop {
            Some((stopped_at, later)) if id_of(position) >= stopped_at.as_str() => later.clone(),
            _ => Outcome::Skipped(SkipReason::AlreadyRepublished),
        };
        run.outcomes.push((position, outcome));
    }
    run
}

/// One page of a key's backlog. The gate reads event ids first: an event's item is written once
/// and never changed, so a batch record of the same event id *is* the item, and the events
/// themselves are read only when the page holds some the batch does not carry (a backlog the
/// stream gave up on, a key's items on another shard, a held key).
async fn backlog_page<T: Table>(
    table: &BoundedReads<'_, T>,
    pk: &str,
    after: Option<&str>,
    up_to: &str,
    carried: &HashMap<&str, &Entry>,
) -> Result<(Vec<Entry>, bool), String> {
    let (ids, more) = table.backlog_ids(pk, after, up_to, BACKLOG_PAGE).await?;
    let from_batch: Option<Vec<Entry>> = ids
        .iter()
        .map(|id| carried.get(id.as_str()).map(|&entry| entry.clone()))
        .collect();
    match from_batch {
        Some(page) => Ok((page, more)),
        None => table.backlog(pk, after, up_to, BACKLOG_PAGE).await,
    }
}

fn log_skip(entry: &Entry, reason: SkipReason) {
    if reason == SkipReason::ExpiredByTtl {
        tracing::error!(
            event_id = entry.event_id(),
            "DynamoDB TTL removed an event that was never republished"
        );
    }
}

async fn run_entry<S: Sink>(entry: &Entry, sink: &S, budget: &Budget) -> Outcome {
    let event_id = entry.event_id();
    match &entry.work {
        Work::Skip(reason) => {
            log_skip(entry, *reason);
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
            if let Some(reason) = sink.refuses(&record.topic) {
                let letter = dead_letter::for_refused_topic(entry, &reason);
                return send_dead_letter(entry, letter, &reason, ErrorClass::Malformed, sink).await;
            }
            let started = Instant::now();
            match sink.republish(record).await {
                Ok(()) => Outcome::Republished {
                    latency: started.elapsed(),
                },
                Err(error) => on_publish_error(entry, record, error, sink).await,
            }
        }
        Work::Malformed { reason, .. } => {
            let letter = dead_letter::for_entry(entry, reason, ErrorClass::Malformed);
            send_dead_letter(entry, letter, reason, ErrorClass::Malformed, sink).await
        }
    }
}

async fn on_publish_error<S: Sink>(
    entry: &Entry,
    record: &StandbyRecord,
    error: KafkaError,
    sink: &S,
) -> Outcome {
    let event_id = entry.event_id();
    let topic = record.topic.as_str();
    if classify::concerns_topic_only(&error) {
        tracing::error!(event_id, topic, %error, "the topic refuses the republisher; the key is held");
        return Outcome::Held {
            reason: error.to_string(),
        };
    }
    match classify(&error) {
        Disposition::Retriable => {
            tracing::warn!(event_id, topic, %error, "republish failed; will retry");
            Outcome::Failed {
                reason: error.to_string(),
            }
        }
        Disposition::NonRetriable
            if classify::says_topic_missing(&error) && !sink.topic_is_missing(topic).await =>
        {
            tracing::warn!(event_id, topic, %error, "the broker says the topic is missing but fresh metadata does not confirm it; will retry");
            Outcome::Failed {
                reason: format!("{error} (not confirmed by fresh metadata)"),
            }
        }
        Disposition::NonRetriable => {
            let reason = error.to_string();
            let letter = dead_letter::for_entry(entry, &reason, ErrorClass::NonRetriable);
            send_dead_letter(entry, letter, &reason, ErrorClass::NonRetriable, sink).await
        }
    }
}

async fn send_dead_letter<S: Sink>(
    entry: &Entry,
    letter: DeadLetter,
    reason: &str,
    class: ErrorClass,
    sink: &S,
) -> Outcome {
    let event_id = entry.event_id();
    let topic = entry.topic().unwrap_or("unknown");
    match sink.dead_letter(letter).await {
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
            tracing::error!(event_id, topic, reason, %error, "the dead-letter topic rejects this record too; it stays in the standby table and holds its key");
            Outcome::Stranded {
                reason: format!("{reason}; dead-letter topic: {error}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use proptest::prelude::*;
    use rdkafka::types::RDKafkaErrorCode;
    use serde_json::json;
    use wire::record::EventId;

    use super::*;

    /// A sink that records what it published and fails the event ids it is told to.
    #[derive(Default)]
    struct FakeSink {
        published: Mutex<Vec<String>>,
        dead_letters: Mutex<Vec<DeadLetter>>,
        fail: HashMap<String, RDKafkaErrorCode>,
        dead_letter_fails: Option<RDKafkaErrorCode>,
        /// Topics a metadata request confirms missing.
        missing_topics: HashSet<String>,
        /// Topics not on the allow-list.
        refused_topics: HashSet<String>,
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

        async fn topic_is_missing(&self, topic: &str) -> bool {
            self.missing_topics.contains(topic)
        }

        fn refuses(&self, topic: &str) -> Option<String> {
            self.refused_topics
                .contains(topic)
                .then(|| format!("{topic} is not allowed"))
        }
    }

    /// The standby table: items by (partition key, event id), deleted ones gone.
    struct FakeTable {
        items: Mutex<BTreeMap<(String, String), Entry>>,
        deleted: Mutex<Vec<ItemKey>>,
        /// Backlog reads that returned whole events (not only their ids).
        full_reads: AtomicUsize,
        fail_at: Option<String>,
        /// Largest page a backlog read returns (small to exercise paging).
        page: usize,
    }

    impl Default for FakeTable {
        fn default() -> Self {
            Self {
                items: Mutex::default(),
                deleted: Mutex::default(),
                full_reads: AtomicUsize::new(0),
                fail_at: None,
                page: 2,
            }
        }
    }

    impl FakeTable {
        /// A table holding the items of `entries` (what the stream or a scan delivered).
        fn holding<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
            let table = Self::default();
            for entry in entries {
                table.insert(entry);
            }
            table
        }

        fn insert(&self, entry: &Entry) {
            if let Some(key) = &entry.key {
                self.items
                    .lock()
                    .unwrap()
                    .insert((key.pk.clone(), key.event_id.clone()), entry.clone());
            }
        }

        fn deleted_ids(&self) -> Vec<String> {
            let deleted = self.deleted.lock().unwrap();
            deleted.iter().map(|k| k.event_id.clone()).collect()
        }
    }

    impl Table for FakeTable {
        async fn delete(&self, keys: &[ItemKey]) -> Result<(), DeleteFailure> {
            let unique: HashSet<&ItemKey> = keys.iter().collect();
            assert_eq!(unique.len(), keys.len(), "a key twice in one delete");
            for (i, key) in keys.iter().enumerate() {
                if self.fail_at.as_deref() == Some(key.event_id.as_str()) {
                    return Err(DeleteFailure {
                        first_not_deleted: i,
                        reason: "throttled".into(),
                    });
                }
                self.items
                    .lock()
                    .unwrap()
                    .remove(&(key.pk.clone(), key.event_id.clone()));
                self.deleted.lock().unwrap().push(key.clone());
            }
            Ok(())
        }

        async fn backlog(
            &self,
            pk: &str,
            after: Option<&str>,
            up_to: &str,
            limit: usize,
        ) -> Result<(Vec<Entry>, bool), String> {
            tokio::task::yield_now().await;
            let items = self.items.lock().unwrap();
            let matching: Vec<Entry> = items
                .iter()
                .filter(|((p, id), _)| {
                    p == pk && id.as_str() <= up_to && after.is_none_or(|a| id.as_str() > a)
                })
                .map(|(_, entry)| entry.clone())
                .collect();
            let page = limit.min(self.page);
            let more = matching.len() > page;
            self.full_reads.fetch_add(1, Ordering::Relaxed);
            Ok((matching.into_iter().take(page).collect(), more))
        }

        async fn backlog_ids(
            &self,
            pk: &str,
            after: Option<&str>,
            up_to: &str,
            limit: usize,
        ) -> Result<(Vec<String>, bool), String> {
            let (page, more) = self.backlog(pk, after, up_to, limit).await?;
            self.full_reads.fetch_sub(1, Ordering::Relaxed);
            Ok((
                page.iter().map(|e| e.event_id().to_string()).collect(),
                more,
            ))
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
        let (sink, table) = (FakeSink::default(), FakeTable::holding(&entries));
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
        assert_eq!(
            table.full_reads.load(Ordering::Relaxed),
            0,
            "the batch carries every waiting event: the gate reads ids only"
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
        let table = FakeTable::holding(&entries);
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
        assert!(deleted.contains(&id(&entries[0])) && deleted.contains(&id(&entries[1])));
        assert!(!deleted.contains(&id(&entries[2])) && !deleted.contains(&id(&entries[4])));
        let published: HashSet<String> = published.into_iter().collect();
        assert_eq!(deleted, published, "whatever was acked is deleted");
    }

    #[tokio::test]
    async fn rejected_records_are_dead_lettered_and_deleted_without_failing_the_batch() {
        let entries: Vec<Entry> = (0..3).map(|i| publish(i, "a")).collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[1]), RDKafkaErrorCode::MessageSizeTooLarge)]),
            ..Default::default()
        };
        let table = FakeTable::holding(&entries);
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert!(matches!(report.outcomes[1], Outcome::DeadLettered { .. }));
        assert_eq!(report.deleted, 3);
        let letters = sink.dead_letters.lock().unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].value, vec![1]);
    }

    #[tokio::test]
    async fn events_for_topics_off_the_allow_list_are_dead_lettered_whole_never_published() {
        let entries: Vec<Entry> = (0..3).map(|i| publish(i, "a")).collect();
        let sink = FakeSink {
            refused_topics: HashSet::from(["t".to_string()]),
            ..Default::default()
        };
        let table = FakeTable::holding(&entries);
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert!(sink.published.lock().unwrap().is_empty());
        assert_eq!(report.deleted, 3);
        let letters = sink.dead_letters.lock().unwrap();
        assert_eq!(letters.len(), 3);
        assert_eq!(
            letters[0].value,
            vec![0],
            "the event itself, for a later redrive"
        );
        let header = |name: &str| {
            letters[0]
                .headers
                .iter()
                .find(|h| h.name == name)
                .and_then(|h| h.value.clone())
        };
        assert_eq!(
            header(wire::dead_letter::ERROR_CLASS),
            Some(b"malformed".to_vec())
        );
        assert_eq!(
            header(wire::dead_letter::MALFORMED_KIND),
            Some(dead_letter::TOPIC_NOT_ALLOWED.as_bytes().to_vec())
        );
        assert_eq!(
            header(wire::dead_letter::REASON),
            Some(b"t is not allowed".to_vec())
        );
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
        let (sink, table) = (FakeSink::default(), FakeTable::holding(&entries));
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert_eq!(report.deleted, 2);
        assert_eq!(
            sink.dead_letters.lock().unwrap()[0].value,
            br#"{"broken":true}"#.to_vec()
        );
    }

    #[tokio::test]
    async fn a_stranded_record_stays_in_the_table_and_holds_its_key_only() {
        let entries: Vec<Entry> = (0..3).map(|i| publish(i, ["a", "a", "b"][i])).collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[0]), RDKafkaErrorCode::MessageSizeTooLarge)]),
            dead_letter_fails: Some(RDKafkaErrorCode::MessageSizeTooLarge),
            ..Default::default()
        };
        let table = FakeTable::holding(&entries);
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(
            report.first_failure, None,
            "a poison record never blocks the shard"
        );
        assert!(matches!(report.outcomes[0], Outcome::Stranded { .. }));
        assert!(
            matches!(report.outcomes[1], Outcome::Held { .. }),
            "a's later event waits behind the stranded one: {:?}",
            report.outcomes[1]
        );
        assert_eq!(*sink.published.lock().unwrap(), vec![id(&entries[2])]);
        assert_eq!(table.deleted_ids(), vec![id(&entries[2])]);
        assert_eq!(report.held.len(), 1);
        assert_eq!(report.held[0].event_id, id(&entries[0]));
    }

    #[tokio::test]
    async fn a_topic_that_refuses_us_holds_its_keys_while_other_keys_flow() {
        let mut entries: Vec<Entry> = (0..4)
            .map(|i| publish(i, ["a", "b", "a", "b"][i]))
            .collect();
        let Work::Publish(record) = &mut entries[1].work else {
            unreachable!()
        };
        record.topic = "denied".into();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[1]), RDKafkaErrorCode::TopicAuthorizationFailed)]),
            ..Default::default()
        };
        let table = FakeTable::holding(&entries);
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None, "the shard is not blocked");
        assert!(matches!(report.outcomes[1], Outcome::Held { .. }));
        assert!(matches!(report.outcomes[3], Outcome::Held { .. }));
        assert_eq!(
            *sink.published.lock().unwrap(),
            vec![id(&entries[0]), id(&entries[2])]
        );
        assert_eq!(table.deleted_ids(), vec![id(&entries[0]), id(&entries[2])]);
        assert_eq!(report.held[0].event_id, id(&entries[1]));
    }

    #[tokio::test]
    async fn a_missing_topic_is_dead_lettered_only_when_metadata_confirms_it() {
        let entries: Vec<Entry> = (0..2).map(|i| publish(i, "a")).collect();
        let fail = HashMap::from([(id(&entries[0]), RDKafkaErrorCode::UnknownTopicOrPartition)]);
        let unconfirmed = FakeSink {
            fail: fail.clone(),
            ..Default::default()
        };
        let report = process(
            &entries,
            &unconfirmed,
            &FakeTable::holding(&entries),
            &budget(),
        )
        .await;
        assert_eq!(report.first_failure, Some(0), "transient: retried");
        assert!(unconfirmed.dead_letters.lock().unwrap().is_empty());

        let confirmed = FakeSink {
            fail,
            missing_topics: HashSet::from(["t".to_string()]),
            ..Default::default()
        };
        let report = process(
            &entries,
            &confirmed,
            &FakeTable::holding(&entries),
            &budget(),
        )
        .await;
        assert_eq!(report.first_failure, None);
        assert!(matches!(report.outcomes[0], Outcome::DeadLettered { .. }));
    }

    #[tokio::test]
    async fn earlier_events_waiting_in_the_table_are_published_first() {
        // The mapping gave up on a's first two events (or they are on another shard): the
        // batch holds only a's third, but the table still holds all three.
        let all: Vec<Entry> = (0..3).map(|i| publish(i, "a")).collect();
        let mut batch = vec![all[2].clone(), publish(1, "b")];
        batch[0].position = 0;
        let table = FakeTable::holding(all.iter().chain(&batch));
        let sink = FakeSink::default();
        let report = process(&batch, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        let published = sink.published.lock().unwrap().clone();
        let a: Vec<String> = published
            .iter()
            .filter(|p| **p != id(&batch[1]))
            .cloned()
            .collect();
        assert_eq!(a, all.iter().map(id).collect::<Vec<_>>());
        assert_eq!(report.from_backlog, 2);
        assert!(table.items.lock().unwrap().is_empty());
        assert_eq!(
            table.full_reads.load(Ordering::Relaxed),
            1,
            "only a's first page (pages of two) holds events the batch lacks"
        );
    }

    #[tokio::test]
    async fn a_record_whose_item_is_gone_is_not_published_again() {
        let entries: Vec<Entry> = (0..2).map(|i| publish(i, "a")).collect();
        // Another path published and deleted the first one already.
        let table = FakeTable::holding(&entries[1..]);
        let sink = FakeSink::default();
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(
            report.outcomes[0],
            Outcome::Skipped(SkipReason::AlreadyRepublished)
        );
        assert_eq!(*sink.published.lock().unwrap(), vec![id(&entries[1])]);
    }

    #[tokio::test]
    async fn an_insert_and_a_modify_of_one_item_publish_and_delete_it_once() {
        let insert = publish(0, "a");
        let mut modify = insert.clone();
        modify.position = 1;
        let mut null_key = publish(2, "n");
        if let Work::Publish(record) = &mut null_key.work {
            record.key = None;
        }
        null_key.key.as_mut().unwrap().pk = "t#n#03".into();
        let mut null_modify = null_key.clone();
        null_modify.position = 3;
        let entries = vec![insert, modify, null_key, null_modify];
        let table = FakeTable::holding(&entries);
        let sink = FakeSink::default();
        let report = process(&entries, &sink, &table, &budget()).await;
        assert_eq!(report.first_failure, None);
        assert_eq!(sink.published.lock().unwrap().len(), 2, "each item once");
        // FakeTable::delete asserts that no key appears twice in one call.
        assert_eq!(report.deleted, 2);
    }

    #[tokio::test]
    async fn an_unavailable_dead_letter_topic_is_a_retriable_failure() {
        let entries: Vec<Entry> = (0..2).map(|i| publish(i, "a")).collect();
        let sink = FakeSink {
            fail: HashMap::from([(id(&entries[0]), RDKafkaErrorCode::InvalidRecord)]),
            dead_letter_fails: Some(RDKafkaErrorCode::MessageTimedOut),
            ..Default::default()
        };
        let report = process(&entries, &sink, &FakeTable::holding(&entries), &budget()).await;
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
        let report = process(&entries, &sink, &FakeTable::holding(&entries), &tight).await;
        assert_eq!(report.first_failure, Some(0));
        assert!(sink.published.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_delete_moves_the_failure_point_back() {
        let entries: Vec<Entry> = (0..4).map(|i| publish(i, ["a", "b"][i % 2])).collect();
        let sink = FakeSink::default();
        let table = FakeTable {
            fail_at: Some(id(&entries[1])),
            ..FakeTable::holding(&entries)
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
            let table = FakeTable::holding(&entries);
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
            let deleted: Vec<String> = table.deleted_ids();
            let before_cut: Vec<String> = entries[..cut].iter().map(id).collect();
            prop_assert_eq!(&deleted[..cut], &before_cut[..], "everything before the failure point, in order");
            let deleted: HashSet<String> = deleted.into_iter().collect();
            let published: HashSet<String> = published.into_iter().collect();
            prop_assert_eq!(deleted, published, "exactly what was acked");
        }

        /// The batch carries any subset of the table's items in any order (records the mapping
        /// dropped, records of one key on other shards): per key, what reaches Kafka is the
        /// key's events in event-id order, stopping at the first failure or hold, and only
        /// published or dead-lettered items are deleted.
        #[test]
        fn the_gate_keeps_event_order_whatever_the_batch_holds(
            keys in prop::collection::vec(0u8..4, 1..40),
            carried in prop::collection::vec(prop::bool::weighted(0.6), 40),
            order in prop::collection::vec(any::<u32>(), 40),
            failures in prop::collection::vec(0u8..20, 40),
        ) {
            let items: Vec<Entry> = keys.iter().enumerate().map(|(i, k)| publish(i, &k.to_string())).collect();
            let mut batch: Vec<Entry> = items.iter().enumerate().filter(|(i, _)| carried[*i]).map(|(_, e)| e.clone()).collect();
            batch.sort_by_key(|e| order[e.position]);
            for (position, entry) in batch.iter_mut().enumerate() {
                entry.position = position;
            }
            let fail: HashMap<String, RDKafkaErrorCode> = items
                .iter()
                .zip(&failures)
                .filter_map(|(e, f)| match f {
                    0 => Some((id(e), RDKafkaErrorCode::MessageTimedOut)),
                    1 => Some((id(e), RDKafkaErrorCode::TopicAuthorizationFailed)),
                    _ => None,
                })
                .collect();
            let sink = FakeSink { fail: fail.clone(), ..Default::default() };
            let table = FakeTable::holding(&items);
            let report = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(process(&batch, &sink, &table, &budget()));

            let published = sink.published.lock().unwrap().clone();
            let deleted: HashSet<String> = table.deleted_ids().into_iter().collect();
            for key in 0u8..4 {
                let of_key: Vec<String> = items.iter().filter(|e| keys[e.position] == key).map(id).collect();
                let got: Vec<String> = published.iter().filter(|p| of_key.contains(p)).cloned().collect();
                prop_assert_eq!(&got[..], &of_key[..got.len()], "key {} out of event order", key);
                let stop = of_key.iter().position(|i| fail.contains_key(i)).unwrap_or(of_key.len());
                prop_assert!(got.len() <= stop);
                let latest_carried = batch.iter().filter(|e| keys_of(e) == key.to_string()).map(id).max();
                if report.first_failure.is_none() {
                    let due: Vec<&String> = of_key.iter().filter(|i| Some(*i) <= latest_carried.as_ref()).collect();
                    prop_assert_eq!(got.len(), due.len().min(stop), "key {} not drained up to its latest record", key);
                }
            }
            for gone in &deleted {
                prop_assert!(published.contains(gone));
            }
        }
    }

    fn keys_of(entry: &Entry) -> String {
        match &entry.work {
            Work::Publish(record) => String::from_utf8(record.key.clone().unwrap()).unwrap(),
            _ => unreachable!(),
        }
    }
}
