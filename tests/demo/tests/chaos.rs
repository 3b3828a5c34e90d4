//! The chaos test: everything that can go wrong between a producer and Kafka, at once, on the
//! local stack — the brokers crash mid-stream, republisher invocations are killed mid-batch,
//! stream batches are delivered twice, malformed items appear in the standby table, and
//! DynamoDB deletes fail between the handler and the table. Then: zero events lost, per-key
//! order kept, every duplicate identical to its original (same event id), every malformed item
//! in the dead-letter topic with its reason, and the table empty.
//!
//! `make test` runs it with `CHAOS_EVENTS` = 3000; `make chaos` with 100,000.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use demo::outage::{self, Plan};
use devstack::{Stack, testkit};
use republisher::adapters::DynamoTable;
use republisher::engine::{DeleteFailure, Table};
use republisher::entry::{Entry, ItemKey};
use republisher::{App, handle};
use serde_json::Value;
use shared::headers;
use shared::record::{EventId, StandbyRecord};

/// Fails every `every`-th delete call before touching DynamoDB (a throttled or failed request).
struct FlakyDeletes {
    inner: DynamoTable,
    every: usize,
    calls: AtomicUsize,
    failed: AtomicUsize,
}

impl Table for FlakyDeletes {
    async fn delete(&self, keys: &[ItemKey]) -> Result<(), DeleteFailure> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % self.every == self.every - 1 {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(DeleteFailure {
                first_not_deleted: 0,
                reason: "injected: ProvisionedThroughputExceededException".into(),
            });
        }
        self.inner.delete(keys).await
    }

    async fn backlog(&self, pk: &str, up_to: &str) -> Result<Vec<Entry>, String> {
        self.inner.backlog(pk, up_to).await
    }
}

/// Items no producer would write, each broken in its own way.
fn malformed_items(topic: &str) -> Vec<(String, HashMap<String, AttributeValue>)> {
    let base = |n: usize| {
        StandbyRecord {
            event_id: EventId::new(),
            topic: topic.to_string(),
            key: Some(format!("broken-{n}").into_bytes()),
            value: vec![0, 0, 0, 0, 1, b'{', b'}'],
            headers: vec![],
            producer_id: "chaos".into(),
            created_at_ms: 0,
            expires_at: 0,
        }
        .to_item()
    };
    let mut items = Vec::new();
    let mut missing_value = base(0);
    missing_value.remove("value");
    items.push(("missing_attribute", missing_value));
    let mut future_format = base(1);
    future_format.insert("format_version".into(), AttributeValue::N("7".into()));
    items.push(("unknown_format_version", future_format));
    let mut wrong_type = base(2);
    wrong_type.insert("key".into(), AttributeValue::S("not bytes".into()));
    items.push(("invalid_attribute", wrong_type));
    let mut bad_id = base(3);
    bad_id.insert("event_id".into(), AttributeValue::S("not-a-uuid".into()));
    items.push(("invalid_attribute", bad_id));
    items
        .into_iter()
        .map(|(kind, item)| (kind.to_string(), item))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_when_everything_goes_wrong() -> Result<()> {
    let events: usize = std::env::var("CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let plan = Plan {
        events,
        keys: (events / 30).clamp(10, 2000),
        workers: 32,
        outage_at: 0.3,
        outage_for: Duration::from_secs(5),
        crash: true,
    };
    let mut stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let outage::Rig {
        dynamodb,
        topic,
        dead_letter_topic,
        standby,
        republisher: settings,
        producer,
        ..
    } = outage::Rig::new(
        &stack,
        &aws,
        "chaos",
        shared::fallback::DEFAULT_RECHECK_MAX_DELAY,
    )
    .await?;

    // 1. Produce through a crash of every broker, with malformed items slipped into the table.
    let malformed = malformed_items(&topic);
    for (_, item) in &malformed {
        dynamodb
            .put_item()
            .table_name(standby.name())
            .set_item(Some(item.clone()))
            .send()
            .await?;
    }
    // 2. Meanwhile drain — as the stream-triggered Lambda would — through killed invocations,
    //    duplicated deliveries and failing deletes.
    let app = App::new(settings, dynamodb.clone())?;
    let flaky = FlakyDeletes {
        inner: app.table,
        every: 4,
        calls: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    };
    let app = App {
        sink: app.sink,
        table: flaky,
        standby: app.standby,
        state: app.state,
        settings: app.settings,
    };
    let invocation = AtomicUsize::new(0);
    let (killed, duplicated) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let producers_done = AtomicBool::new(false);
    let (produced, drained) = tokio::join!(
        async {
            let produced = outage::produce(&mut stack, producer, &topic, &plan, |_, _| {}).await;
            producers_done.store(true, Ordering::Relaxed);
            produced
        },
        outage::drain(
            &aws,
            &standby,
            // Small batches: many invocations, so every kind of trouble happens often.
            100,
            |event: Value| {
                let n = invocation.fetch_add(1, Ordering::Relaxed);
                let (app, killed, duplicated) = (&app, &killed, &duplicated);
                async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    if n % 5 == 1 {
                        // Lambda kills the invocation mid-batch: the handler is dropped wherever it is.
                        killed.fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::time::timeout(
                            Duration::from_millis(40),
                            handle(app, event, deadline),
                        )
                        .await;
                        return Err("invocation killed mid-batch".to_string());
                    }
                    if n % 5 == 3 {
                        // The same batch delivered twice.
                        duplicated.fetch_add(1, Ordering::Relaxed);
                        handle(app, event.clone(), deadline)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    handle(app, event, deadline)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
            || producers_done.load(Ordering::Relaxed),
            Duration::from_secs(1800),
            |_| {},
        )
    );
    let (produced, drained) = (produced?, drained?);
    ensure!(
        produced.errors.is_empty(),
        "the fallback refused events: {:?}",
        &produced.errors[..3.min(produced.errors.len())]
    );
    let standby_count = produced.count(|o| matches!(o, shared::fallback::Outcome::Standby { .. }));
    ensure!(
        standby_count > 0,
        "the outage sent nothing to the standby table"
    );

    // 3. Nothing lost, order kept, duplicates identical, poison where it belongs, table empty.
    let verdict = outage::verify(&bootstrap, &topic, &produced).await?;
    ensure!(
        verdict.lost.is_empty(),
        "{} events lost, e.g. {:?}",
        verdict.lost.len(),
        &verdict.lost[..3.min(verdict.lost.len())]
    );
    ensure!(
        verdict.order_violations == 0,
        "{} per-key order violations",
        verdict.order_violations
    );
    ensure!(
        verdict.differing_duplicates == 0,
        "duplicates that differ from their original"
    );
    ensure!(
        outage::table_is_empty(&standby).await?,
        "the standby table is not empty"
    );

    let letters = {
        let (bootstrap, dlt) = (bootstrap.clone(), dead_letter_topic.clone());
        tokio::task::spawn_blocking(move || {
            testkit::consume_all(&bootstrap, &dlt, Duration::from_secs(60))
        })
        .await??
    };
    for (kind, item) in &malformed {
        let Some(AttributeValue::S(event_id)) = item.get("event_id") else {
            unreachable!()
        };
        let letter = letters
            .iter()
            .find(|l| l.header(headers::EVENT_ID).as_deref() == Some(event_id.as_str()))
            .unwrap_or_else(|| {
                panic!("malformed item {event_id} ({kind}) is not in the dead-letter topic")
            });
        assert_eq!(
            letter.header("dlt-malformed-kind").as_deref(),
            Some(kind.as_str())
        );
        assert!(
            letter
                .header(headers::DLT_REASON)
                .is_some_and(|r| !r.is_empty())
        );
    }

    println!(
        "chaos: {} events ({} keys) · {} via the standby table · {} delivered once or more · {} duplicates (same event id) · \
         {} malformed dead-lettered · drained in {:.1}s over {} invocations ({} killed, {} delivered twice, {} deletes failed, {} partial failures)",
        produced.sent.len(),
        plan.keys,
        standby_count,
        verdict.delivered_unique,
        verdict.duplicates,
        malformed.len(),
        drained.elapsed.as_secs_f64(),
        drained.invocations,
        killed.load(Ordering::Relaxed),
        duplicated.load(Ordering::Relaxed),
        app.table.failed.load(Ordering::Relaxed),
        drained.partial_failures,
    );
    Ok(())
}
