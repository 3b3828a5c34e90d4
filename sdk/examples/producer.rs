//! A producer application's whole use of the SDK: build the producer once, send an event, act
//! on where it went. Copy it into a service.
//!
//! Needs `KAFKA_BOOTSTRAP_SERVERS`, `STANDBY_TABLE_NAME`, `STANDBY_PRODUCER_ID`,
//! `STANDBY_DEAD_LETTER_TOPIC` (and, in AWS, `AWS_REGION` for MSK IAM; see the producer guide),
//! and `SCHEMA_REGISTRY_NAME`: the Glue registry holding a JSON schema named `orders`.
//! Against the local stack: `make stack-up`, then
//! `set -a; . .stack/stack.env; set +a; cargo run -p sdk --example producer`
//! with the variables above set (the topic `orders`, the table and the schema must exist).

use std::sync::Arc;
use std::time::Duration;

use sdk::config::ProcessEnv;
use sdk::fallback::{FallbackProducer, Outcome};
use sdk::producer::{OutgoingEvent, Producer, ProducerSettings, Route, SendError};
use sdk::schema::{GlueRegistry, Payload, SchemaCache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Once per process: the producer holds the Kafka connection, each key's state and the
    // compiled schemas. One route here; a service publishing to several domain clusters adds a
    // route (topic prefix → that cluster's FallbackProducer) per cluster.
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let cluster = FallbackProducer::from_env(&ProcessEnv, aws_sdk_dynamodb::Client::new(&aws))?;
    let schemas = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&aws),
    ))));
    let registry = std::env::var("SCHEMA_REGISTRY_NAME")?;
    let producer = Producer::start(
        schemas,
        vec![Route::new("", cluster)],
        ProducerSettings::new(registry),
    )
    .await?;

    // The event's id is minted here, once, and kept across retries of this same event: a retry
    // after an ambiguous error then makes at most a duplicate under the same id, which consumers
    // drop. (Ids order a key's events in the standby table: never mint one for an old event.)
    let event = OutgoingEvent::new(
        "orders",
        Some(b"customer-42".to_vec()),
        Payload::Json(serde_json::json!({"order_id": "o-1", "status": "paid"})),
    )
    .header("trace-id", "abc123");
    let id = event.id;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match producer.send(&event).await {
            Ok(delivery) => {
                match delivery.outcome {
                    Outcome::Kafka { partition, offset } => {
                        println!("{id}: in Kafka at partition {partition}, offset {offset}");
                    }
                    // Safe: the republisher publishes it, in its key's order, once Kafka is back.
                    Outcome::Standby { reason } => {
                        println!(
                            "{id}: Kafka unavailable ({reason}); waiting in the standby table"
                        );
                    }
                    // Kafka will never take this event (too large, unknown topic, …): it is in
                    // the dead-letter topic with the reason; an operator repairs and redrives it.
                    Outcome::DeadLettered { reason } => {
                        eprintln!("{id}: rejected by Kafka ({reason}); dead-lettered");
                    }
                }
                return Ok(());
            }
            // The event does not match its schema: a bug to fix in this service. A copy with the
            // failing path is in the dead-letter topic.
            Err(error @ SendError::Invalid { .. }) => return Err(error.into()),
            // The registry or both Kafka and the standby table were unreachable: the event is
            // still ours. Retry the same event, then give up to the caller.
            Err(error) if error.is_transient() && attempt < 3 => {
                eprintln!("{id}: not accepted yet ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
