//! Publishing a validated batch in the order that matters: the events of one key one after the
//! other, each awaited (in Kafka or in the standby table) before the next is sent, keys side by
//! side. When an event of a key cannot be accepted, the key's later events in the batch are not
//! sent (`aborted`): publishing them would put them ahead of it when the caller retries.

use std::future::Future;

use futures::future::join_all;

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published<D, E> {
    Accepted(D),
    Failed(E),
    /// Not sent: an earlier event of its key failed.
    Aborted,
}

/// The batch's positions grouped into chains: one per key in first-seen order, and each event
/// without a key alone (nothing orders those).
pub fn chains(keys: &[Option<&[u8]>]) -> Vec<Vec<usize>> {
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut by_key: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for (position, key) in keys.iter().enumerate() {
        match key {
            Some(key) => match by_key.get(key) {
                Some(&chain) => chains[chain].push(position),
                None => {
                    by_key.insert(key, chains.len());
                    chains.push(vec![position]);
                }
            },
            None => chains.push(vec![position]),
        }
    }
    chains
}

/// Sends `events` with `send`, chain by chain as [`chains`] groups them by `key_of`; the
/// outcomes come back in the events' order.
pub async fn publish<T, D, E, F, Fut>(
    events: Vec<T>,
    key_of: impl Fn(&T) -> Option<&[u8]>,
    send: F,
) -> Vec<Published<D, E>>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<D, E>>,
{
    let groups = chains(&events.iter().map(&key_of).collect::<Vec<_>>());
    let mut slots: Vec<Option<T>> = events.into_iter().map(Some).collect();
    let total = slots.len();
    let runs = groups.into_iter().map(|chain| {
        let members: Vec<(usize, T)> = chain
            .into_iter()
            .filter_map(|position| slots[position].take().map(|event| (position, event)))
            .collect();
        let send = &send;
        async move {
            let mut outcomes = Vec::with_capacity(members.len());
            let mut failed = false;
            for (position, event) in members {
                if failed {
                    outcomes.push((position, Published::Aborted));
                    continue;
                }
                let outcome = match send(event).await {
                    Ok(delivery) => Published::Accepted(delivery),
                    Err(error) => {
                        failed = true;
                        Published::Failed(error)
                    }
                };
                outcomes.push((position, outcome));
            }
            outcomes
        }
    });
    let mut ordered: Vec<Option<Published<D, E>>> = (0..total).map(|_| None).collect();
    for (position, outcome) in join_all(runs).await.into_iter().flatten() {
        ordered[position] = Some(outcome);
    }
    ordered
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Published::Aborted))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn chains_follow_keys_and_keyless_events_stand_alone() {
        let a: &[u8] = b"a";
        let b: &[u8] = b"b";
        assert_eq!(
            chains(&[Some(a), None, Some(b), Some(a), None, Some(b)]),
            vec![vec![0, 3], vec![1], vec![2, 5], vec![4]]
        );
    }

    #[tokio::test]
    async fn a_failure_stops_its_key_and_only_its_key() {
        let sent = Mutex::new(Vec::new());
        let events = vec![("a", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 4)];
        let outcomes = publish(
            events,
            |(key, _)| Some(key.as_bytes()),
            |(key, n)| {
                sent.lock().unwrap().push(n);
                async move {
                    if key == "a" && n == 2 {
                        Err("refused")
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(
            outcomes,
            vec![
                Published::Accepted(0),
                Published::Accepted(1),
                Published::Failed("refused"),
                Published::Aborted,
                Published::Accepted(4),
            ]
        );
        let sent = sent.into_inner().unwrap();
        assert!(!sent.contains(&3), "sent after its key failed: {sent:?}");
        let position = |n| sent.iter().position(|&m| m == n).unwrap();
        assert!(position(0) < position(2) && position(1) < position(4));
    }
}
