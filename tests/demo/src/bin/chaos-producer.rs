//! One producer process of the chaos test's fleet ([`demo::fleet`]): an application linking the
//! producer fallback, configured from its environment as a deployed service would be.
//!
//! Reads one command per line on stdin, `event_id<TAB>topic<TAB>key<TAB>seq`, sends the demo
//! event `seq` of `key` under that event id (commands run concurrently, as requests do in a
//! service), and answers each on stdout with `event_id<TAB>outcome<TAB>detail`, where outcome is
//! `kafka`, `standby`, `dead_lettered` or `error`. Exits when stdin closes and every send has
//! answered.

use std::sync::Arc;

use anyhow::{Context, Result};
use sdk::config::ProcessEnv;
use sdk::fallback::{Event, FallbackProducer, Outcome};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wire::record::{EventId, Header};

#[tokio::main]
async fn main() -> Result<()> {
    // Stdout carries the answers; the producer's metrics documents must not land among them.
    sdk::metrics::emit_metrics_to_stdout(false);
    // Built as `sdk/examples/producer.rs` shows; the fleet's environment sets a 2 s delivery
    // timeout (KAFKA_DELIVERY_TIMEOUT_MS) so outages are noticed quickly.
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let producer = Arc::new(FallbackProducer::from_env(
        &ProcessEnv,
        aws_sdk_dynamodb::Client::new(&aws),
    )?);

    let (answers, mut to_write) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = to_write.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            stdout.flush().await?;
        }
        anyhow::Ok(())
    });

    let mut sends = tokio::task::JoinSet::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (event_id, event) = parse(&line).with_context(|| format!("command {line:?}"))?;
        let (producer, answers) = (producer.clone(), answers.clone());
        sends.spawn(async move {
            let (outcome, detail) = match producer.send_with_id(event, event_id).await {
                Ok(delivery) => match delivery.outcome {
                    Outcome::Kafka { partition, offset } => {
                        ("kafka", format!("{partition}:{offset}"))
                    }
                    Outcome::Standby { reason } => ("standby", reason),
                    Outcome::DeadLettered { reason } => ("dead_lettered", reason),
                },
                Err(error) => ("error", error.to_string()),
            };
            let detail = detail.replace(['\t', '\n'], " ");
            let _ = answers.send(format!("{event_id}\t{outcome}\t{detail}\n"));
        });
    }
    while sends.join_next().await.is_some() {}
    drop(answers);
    writer.await??;
    Ok(())
}

fn parse(line: &str) -> Result<(EventId, Event)> {
    let mut fields = line.split('\t');
    let mut next = |name: &str| fields.next().with_context(|| format!("no {name}"));
    let event_id: EventId = next("event id")?.parse()?;
    let topic = next("topic")?.to_string();
    let key: usize = next("key")?.parse()?;
    let seq: usize = next("seq")?.parse()?;
    Ok((
        event_id,
        Event {
            topic,
            key: Some(format!("customer-{key}").into_bytes()),
            value: demo::outage::payload(key, seq),
            headers: vec![Header::new("source", "chaos-fleet")],
        },
    ))
}
