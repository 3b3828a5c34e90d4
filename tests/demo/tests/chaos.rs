//! The chaos test: everything that can go wrong between producers and Kafka, at once, on the
//! local stack.
//!
//! - Three producer **processes** share the keys (a key moves between them every few events,
//!   one signal interval apart), and one is killed (SIGKILL) and replaced mid-outage; its
//!   unanswered sends are retried with their event ids on the replacement.
//! - No broker answers (one SIGKILLed, the others frozen) for longer than the stream mapping's
//!   record-age limit, so the mapping gives up on records (as Lambda's does after
//!   `MaximumRecordAgeInSeconds`) and their events must come through the order gate and the
//!   sweep.
//! - The stream is read in three lanes (items of one key on different shards), with a retry
//!   limit; republisher invocations are killed mid-batch, batches delivered twice, and DynamoDB
//!   deletes fail between the handler and the table.
//! - One topic refuses writes for a while (a Kafka ACL denying the anonymous principal): its keys
//!   are held, the others flow, and the sweep — running alongside the stream all along —
//!   releases them once the ACL is gone.
//! - Malformed items appear in the standby table.
//!
//! Then: zero events lost, no per-key order violation by first occurrence, every delivered id
//! produced, every duplicate identical to its original (headers included), every malformed item
//! in the dead-letter topic with its reason, and the table empty (markers included).
//!
//! `make test` runs it with `CHAOS_EVENTS` = 3000; `make chaos` with 100,000.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use demo::fleet::{Fleet, FleetPlan};
use demo::outage::{self, Mapping};
use devstack::{Stack, testkit};
use republisher::adapters::DynamoTable;
use republisher::engine::{DeleteFailure, Table};
use republisher::entry::{Entry, ItemKey};
use republisher::{App, handle};
use sdk::fallback::Outcome;
use serde_json::Value;
use wire::dead_letter;
use wire::headers;

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

    async fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), String> {
        self.inner.backlog(pk, after, up_to, limit).await
    }

    async fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        self.inner.backlog_ids(pk, after, up_to, limit).await
    }
}

/// Items no producer would write, each broken in its own way.
fn malformed_items(topic: &str) -> Vec<(String, HashMap<String, AttributeValue>)> {
    let base = |n: usize| {
        let mut record = testkit::standby_record(topic)
            .key(format!("broken-{n}"))
            .payload("{}")
            .producer("chaos")
            .build();
        record.created_at_ms = 0;
        record.to_item()
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
    shared::telemetry::emit_metrics_to_stdout(false);
    let events = demo::env_number("CHAOS_EVENTS", 3000);
    let outage_for = Duration::from_secs(demo::env_number("CHAOS_OUTAGE_SECONDS", 8) as u64);
    let record_age_limit = Duration::from_secs(5);
    let signal_interval = Duration::from_millis(200);
    let key_count = (events / 30).clamp(10, 2000);
    let per_key = (events / key_count).max(1);

    let mut stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let interval_ms = signal_interval.as_millis().to_string();
    let rig = outage::Rig::new(
        &stack,
        &aws,
        "chaos",
        sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
        &[
            ("SWEEP_MIN_AGE_SECONDS", "3"),
            ("SWEEP_PAGE_SIZE", "200"),
            ("STANDBY_SIGNAL_INTERVAL_MS", interval_ms.as_str()),
        ],
    )
    .await?;
    let refused_topic = testkit::unique_name("chaos-refused");
    testkit::create_topic(&bootstrap, &refused_topic, 12, 3, &[]).await?;
    let topic_of = |key: usize| {
        if key % 10 == 3 {
            refused_topic.clone()
        } else {
            rig.topic.clone()
        }
    };
    let plan = FleetPlan {
        per_key,
        keys: (0..key_count).map(|k| (topic_of(k), k)).collect(),
        switch_every: 4,
        signal_interval,
    };
    let total = per_key * key_count;
    let fleet = Fleet::start(
        env!("CARGO_BIN_EXE_chaos-producer").into(),
        rig.producer_env.clone(),
        3,
    )
    .await?;

    let malformed = malformed_items(&rig.topic);
    for (_, item) in &malformed {
        rig.dynamodb
            .put_item()
            .table_name(rig.standby.name())
            .set_item(Some(item.clone()))
            .send()
            .await?;
    }
    let app = App::new(rig.republisher.clone(), rig.dynamodb.clone())?;
    let app = App {
        table: FlakyDeletes {
            inner: app.table,
            every: 4,
            calls: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        },
        sink: app.sink,
        standby: app.standby,
        state: app.state,
        settings: app.settings,
    };

    let sent_count = AtomicUsize::new(0);
    let (producers_done, drained_flag) = (AtomicBool::new(false), AtomicBool::new(false));
    let invocation = AtomicUsize::new(0);
    let (killed, duplicated) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (sweeps, held_released) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mapping = Mapping {
        batch_size: 100,
        lanes: 3,
        max_record_age: Some(record_age_limit),
        max_retries: 5,
    };
    let at = |fraction: f64| (total as f64 * fraction) as usize;
    let wait_until = |count: usize| {
        let sent_count = &sent_count;
        async move {
            while sent_count.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The first failure (a fault that could not be injected, a stream that cannot be read) ends
    // the test at once rather than after the producers have run dry.
    let (produced, (), drained, ()) = tokio::try_join!(
        async {
            let produced = fleet.produce(&plan, &sent_count).await;
            producers_done.store(true, Ordering::Relaxed);
            produced
        },
        // The faults, in the order a bad day brings them.
        async {
            wait_until(at(0.2)).await;
            stack.deny_writes(&refused_topic, true)?;
            wait_until(at(0.3)).await;
            let outage = tokio::task::block_in_place(|| stack.kafka_outage(true))?;
            tokio::time::sleep(outage_for / 2).await;
            fleet.restart(0).await?;
            tokio::time::sleep(outage_for / 2).await;
            tokio::task::block_in_place(|| outage.end())?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            stack.deny_writes(&refused_topic, false)?;
            anyhow::Ok(())
        },
        async {
            let drained = outage::drain(
                &aws,
                &rig.standby,
                mapping,
                |event: Value| {
                    let n = invocation.fetch_add(1, Ordering::Relaxed);
                    let (app, killed, duplicated) = (&app, &killed, &duplicated);
                    async move {
                        if n % 5 == 1 {
                            // Lambda kills the invocation mid-batch: the handler is dropped wherever it is.
                            killed.fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::time::timeout(
                                Duration::from_millis(40),
                                handle(app, testkit::invocation(event)),
                            )
                            .await;
                            return Err("invocation killed mid-batch".to_string());
                        }
                        if n % 5 == 3 {
                            duplicated.fetch_add(1, Ordering::Relaxed);
                            handle(app, testkit::invocation(event.clone()))
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                        handle(app, testkit::invocation(event))
                            .await
                            .map_err(|e| e.to_string())
                    }
                },
                || producers_done.load(Ordering::Relaxed),
                Duration::from_secs(3600),
                |_| {},
            )
            .await;
            drained_flag.store(true, Ordering::Relaxed);
            drained
        },
        // The scheduled sweep, alongside the stream all along.
        async {
            // A sweep fails only when DynamoDB does; one that keeps failing would strand every
            // record the mapping gave up on, so it ends the test with its error.
            let mut failed_in_a_row = 0;
            while !drained_flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match outage::sweep(&app).await {
                    Ok(report) => {
                        failed_in_a_row = 0;
                        sweeps.fetch_add(1, Ordering::Relaxed);
                        held_released.fetch_add(report.held_released, Ordering::Relaxed);
                    }
                    Err(error) => {
                        failed_in_a_row += 1;
                        ensure!(failed_in_a_row < 5, "the sweep keeps failing: {error}");
                    }
                }
            }
            anyhow::Ok(())
        },
    )?;
    let spawned = fleet.spawned();
    fleet.stop().await?;
    // Held keys whose topic took writes again late, and the markers: the sweep finishes them.
    let released_at_the_end = outage::sweep_until_empty(&app, Duration::from_secs(300)).await?;

    ensure!(
        produced.errors.is_empty(),
        "the fallback refused events: {:?}",
        &produced.errors[..3.min(produced.errors.len())]
    );
    let standby_count = produced.count(|o| matches!(o, Outcome::Standby { .. }));
    // The faults must hit the standby path, not only the direct one.
    ensure!(
        standby_count * 3 >= produced.sent.len(),
        "only {standby_count} of {} events went through the standby table (a third at least)",
        produced.sent.len()
    );

    for topic in [&rig.topic, &refused_topic] {
        let verdict = outage::verify(&bootstrap, topic, &produced).await?;
        ensure!(
            verdict.lost.is_empty(),
            "{topic}: {} events lost, e.g. {:?}",
            verdict.lost.len(),
            &verdict.lost[..3.min(verdict.lost.len())]
        );
        ensure!(
            verdict.order_violations == 0,
            "{topic}: {} per-key order violations:\n{}",
            verdict.order_violations,
            verdict.violations.join("\n")
        );
        ensure!(
            verdict.differing_duplicates == 0,
            "{topic}: duplicates that differ from their original"
        );
        ensure!(
            verdict.unknown_ids == 0,
            "{topic}: {} delivered event ids were never produced",
            verdict.unknown_ids
        );
    }
    ensure!(
        outage::table_is_empty(&rig.standby).await?,
        "the standby table is not empty"
    );

    let letters =
        testkit::read_topic_to_end(&bootstrap, &rig.dead_letter_topic, Duration::from_secs(60))
            .await?;
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
            letter.header(dead_letter::MALFORMED_KIND).as_deref(),
            Some(kind.as_str())
        );
        assert!(
            letter
                .header(dead_letter::REASON)
                .is_some_and(|r| !r.is_empty())
        );
    }

    // Leave the cluster as healthy as it was found: the crash can leave followers catching up.
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::wait_until_fully_replicated(&bootstrap, Duration::from_secs(180))
        })
        .await??;
    }

    let refused_count = produced
        .sent
        .iter()
        .filter(|s| s.topic == refused_topic)
        .count();
    println!(
        "chaos: {} events ({} keys, {} on the refused topic) from {} producer processes ({} started, {} sends retried after a kill) · \
         {} via the standby table ({:.0}%) · {} malformed dead-lettered · drained in {:.1}s over {} invocations ({} killed, {} delivered twice, \
         {} deletes failed, {} partial failures, {} records given up by the mapping) · {} sweeps alongside, {} held keys released",
        produced.sent.len(),
        key_count,
        refused_count,
        3,
        spawned,
        produced.retried_after_restart,
        standby_count,
        100.0 * standby_count as f64 / produced.sent.len().max(1) as f64,
        malformed.len(),
        drained.elapsed.as_secs_f64(),
        drained.invocations,
        killed.load(Ordering::Relaxed),
        duplicated.load(Ordering::Relaxed),
        app.table.failed.load(Ordering::Relaxed),
        drained.partial_failures,
        drained.given_up,
        sweeps.load(Ordering::Relaxed),
        held_released.load(Ordering::Relaxed) + released_at_the_end,
    );
    Ok(())
}
