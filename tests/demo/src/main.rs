//! `make demo`: the project's job on one machine. Produces events through the producer fallback
//! while the Kafka brokers crash and come back, drains the standby table with the republisher,
//! proves nothing was lost, then scales the cluster out and rebalances it.
//! `DEMO_EVENTS` (default 20000) and `DEMO_KEYS` (default 200) size the first part. Exits
//! non-zero if any event was lost or overtook an earlier one of its key.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use demo::outage::{self, Plan};
use demo::scaling::{self, BrokerLoad};
use devstack::{Stack, testkit};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sdk::fallback::Outcome;

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("\nFAILED: events were lost or arrived out of order (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool> {
    let plan = Plan {
        events: demo::env_number("DEMO_EVENTS", 20_000),
        keys: demo::env_number("DEMO_KEYS", 200),
        workers: 48,
        outage_at: 0.3,
        outage_for: Duration::from_secs(8),
        crash: true,
    };
    let mut stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    // moto's Query reads a whole partition; DynamoDB's does not, and 5 s is cheap there.
    let outage::Rig {
        dynamodb,
        topic,
        standby,
        republisher: settings,
        producer,
        ..
    } = outage::Rig::new(&stack, &aws, "demo", Duration::from_secs(10), &[]).await?;

    shared::telemetry::emit_metrics_to_stdout(false);
    println!(
        "1/2 Producing {} events over {} keys through the producer fallback; the brokers go down (one killed, the others frozen) at {:.0}%\n    \
         and restart {}s later. Meanwhile the stream driver invokes the republisher with the standby table's\n    \
         stream, exactly as Lambda would.",
        plan.events,
        plan.keys,
        plan.outage_at * 100.0,
        plan.outage_for.as_secs()
    );
    let bars = MultiProgress::new();
    let producing = bars.add(bar(
        plan.events as u64,
        "    {spinner} [{bar:40}] {pos}/{len} events produced {msg}",
    ));
    let draining = bars.add(bar(
        0,
        "    {spinner} republisher: {pos} stream records handled {msg}",
    ));
    let app = republisher::App::new(settings, dynamodb.clone())?;
    // Every Kafka and DynamoDB call of the republisher timed, to show where the drain goes.
    let app = republisher::App {
        sink: outage::Timed::new(app.sink),
        table: outage::Timed::new(app.table),
        standby: app.standby,
        state: app.state,
        settings: app.settings,
    };
    let producers_done = AtomicBool::new(false);
    let (produced, drained) = tokio::join!(
        async {
            let produced = outage::produce(
                &mut stack,
                producer.clone(),
                &topic,
                &plan,
                |sent, phase| {
                    producing.set_position(sent as u64);
                    producing.set_message(phase.to_string());
                },
            )
            .await;
            producers_done.store(true, Ordering::Relaxed);
            produced
        },
        // The republisher runs all along, as the stream-triggered Lambda would.
        outage::drain(
            &aws,
            &standby,
            outage::Mapping::batches_of(1000),
            |event| republisher::handle(&app, devstack::testkit::invocation(event)),
            || producers_done.load(Ordering::Relaxed),
            Duration::from_secs(1200),
            |delivered| draining.set_position(delivered as u64),
        )
    );
    let (produced, drained) = (produced?, drained?);
    producing.finish_with_message("done");
    // The topic's backlog marker goes with the sweep pass that finds the topic empty.
    outage::sweep_until_empty(&app, Duration::from_secs(60)).await?;
    draining.finish_with_message("standby table empty");
    let standby_count = produced.count(|o| matches!(o, Outcome::Standby { .. }));
    let verdict = outage::verify(&bootstrap, &topic, &produced).await?;

    let mut summary = table(&["", "events", "what it means"]);
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "produced",
            produced.sent.len().to_string(),
            "accepted by FallbackProducer::send",
        ),
        (
            "→ straight to Kafka",
            produced
                .count(|o| matches!(o, Outcome::Kafka { .. }))
                .to_string(),
            "acked by the brokers",
        ),
        (
            "→ to the standby table",
            standby_count.to_string(),
            "brokers down, or the key still had events waiting",
        ),
        (
            "→ dead-lettered",
            verdict.dead_lettered.to_string(),
            "rejected by Kafka for good",
        ),
        (
            "republished",
            drained.records_delivered.to_string(),
            "stream records the republisher handled (retries included)",
        ),
        (
            "delivered (unique event ids)",
            verdict.delivered_unique.to_string(),
            "read back from Kafka by an independent consumer",
        ),
        (
            "duplicates (same event id)",
            verdict.duplicates.to_string(),
            "at-least-once copies; consumers drop them by event-id",
        ),
        (
            "per-key order violations",
            verdict.order_violations.to_string(),
            "a key's event read before an earlier one",
        ),
        (
            "LOST",
            verdict.lost.len().to_string(),
            "produced, never delivered, not dead-lettered",
        ),
    ];
    let drain_after_recovery = produced
        .recovered_at
        .map(|at| drained.finished_at.saturating_duration_since(at))
        .unwrap_or_default();
    for (label, value, meaning) in rows {
        summary.add_row(vec![
            Cell::new(label),
            Cell::new(value).set_alignment(CellAlignment::Right),
            Cell::new(meaning),
        ]);
    }
    println!("{summary}");
    println!(
        "    produced in {:.1}s · standby table empty {:.1}s after the brokers were back · {} republisher invocations ({} partial failures) · fallback errors: {}",
        produced.elapsed.as_secs_f64(),
        drain_after_recovery.as_secs_f64(),
        drained.invocations,
        drained.partial_failures,
        produced.errors.len()
    );
    let signals = producer.signal_stats();
    println!(
        "    keeping order across instances cost the producers {} marker reads, {} marker writes and {} key checks for {} events ({:.1}s of calls)",
        signals.marker_reads,
        signals.marker_writes,
        signals.key_checks,
        produced.sent.len(),
        signals.busy.as_secs_f64()
    );
    println!(
        "    where the drain's time went: reading the stream {:.1}s (moto) · in the handler {:.1}s, of which deletes {:.1}s \
         (BatchWriteItem {}, moto); concurrently inside it, order-gate reads {} (Query, moto) and publishes {} (Kafka acks)",
        drained.reading.as_secs_f64(),
        drained.invoking.as_secs_f64(),
        app.table.second.total().as_secs_f64(),
        app.table.second.describe(),
        app.table.first.describe(),
        app.sink.first.describe(),
    );
    for lost in verdict.lost.iter().take(10) {
        println!("    lost: {lost}");
    }

    println!(
        "2/2 Scaling: high CPU → alarm → autoscaler → UpdateBrokerCount → 3 new brokers → rebalancer."
    );
    let scaled = scaling::scale_out_and_rebalance(|news| println!("    {news}")).await?;
    println!(
        "    decision: {} · new brokers {:?} · rebalanced in {} invocations · {:.1}s",
        scaled.decision["reason"].as_str().unwrap_or_default(),
        scaled.new_brokers,
        scaled.rebalance_invocations,
        scaled.elapsed.as_secs_f64()
    );
    let mut layout = table(&[
        "broker",
        "rack",
        "replicas before",
        "replicas after",
        "leaders before",
        "leaders after",
    ]);
    let before: HashMap<i32, &BrokerLoad> = scaled.before.iter().map(|b| (b.id, b)).collect();
    for after in &scaled.after {
        let old = before.get(&after.id);
        layout.add_row(vec![
            Cell::new(after.id),
            Cell::new(&after.rack),
            Cell::new(old.map_or(0, |b| b.replicas)).set_alignment(CellAlignment::Right),
            Cell::new(after.replicas).set_alignment(CellAlignment::Right),
            Cell::new(old.map_or(0, |b| b.leaders)).set_alignment(CellAlignment::Right),
            Cell::new(after.leaders).set_alignment(CellAlignment::Right),
        ]);
    }
    println!("{layout}");
    Ok(verdict.is_clean() && produced.errors.is_empty())
}
