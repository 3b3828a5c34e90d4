//! Which event ids a consumer has already handled, so a redelivered or republished duplicate is
//! dropped. At-least-once delivery (the fallback's ambiguous sends, the republisher's retries,
//! a consumer restart before its commit) makes duplicates; they always carry the same
//! `event-id`.
//!
//! An id is recorded only after its event was handled, so an event whose handler failed is not
//! taken for a duplicate when it comes back through a retry topic.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use wire::record::EventId;

/// Where handled ids are remembered. The default, [`MemoryDedupe`], is one process's window; a
/// team that needs deduplication across instances and restarts implements this over a shared
/// store (a DynamoDB table with a TTL, a conditional put per id).
pub trait DedupeStore: Send + Sync {
    /// Whether `id` was handled already.
    fn seen(&self, id: EventId) -> BoxFuture<'_, bool>;
    /// Records that `id` was handled.
    fn record(&self, id: EventId) -> BoxFuture<'_, ()>;
}

/// The last `capacity` handled ids of this process, forgotten oldest first. Duplicates arrive
/// close to their original (a redelivery after a restart, a republish after an outage), so a
/// window of recent ids catches them; one further apart than the window is handled again.
pub struct MemoryDedupe {
    capacity: usize,
    window: Mutex<(HashSet<EventId>, VecDeque<EventId>)>,
}

impl MemoryDedupe {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            window: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }
}

impl Default for MemoryDedupe {
    /// 100,000 ids: about 5 MB.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl DedupeStore for MemoryDedupe {
    fn seen(&self, id: EventId) -> BoxFuture<'_, bool> {
        let window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let seen = window.0.contains(&id);
        async move { seen }.boxed()
    }

    fn record(&self, id: EventId) -> BoxFuture<'_, ()> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let (ids, order) = &mut *window;
        if ids.insert(id) {
            order.push_back(id);
            while order.len() > self.capacity {
                if let Some(oldest) = order.pop_front() {
                    ids.remove(&oldest);
                }
            }
        }
        async {}.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_the_last_ids_up_to_its_capacity() {
        let dedupe = MemoryDedupe::new(2);
        let ids: Vec<EventId> = (0..3).map(|_| EventId::new()).collect();
        assert!(!dedupe.seen(ids[0]).await);
        for id in &ids {
            dedupe.record(*id).await;
        }
        dedupe.record(ids[2]).await;
        assert!(!dedupe.seen(ids[0]).await, "the oldest was forgotten");
        assert!(dedupe.seen(ids[1]).await && dedupe.seen(ids[2]).await);
    }
}
