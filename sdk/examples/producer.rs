//! A producer application's whole use of the SDK: build the producer once from the
//! environment, send an event, act on where it went. Copy it into a service.
//!
//! Needs `KAFKA_BOOTSTRAP_SERVERS`, `STANDBY_TABLE_NAME`, `STANDBY_PRODUCER_ID`,
//! `STANDBY_DEAD_LETTER_TOPIC` (and, in AWS, `AWS_REGION` for MSK IAM); see the producer guide.
//! Against the local stack: `make stack-up`, then
//! `set -a; . .stack/stack.env; set +a; cargo run -p sdk --example producer`
//! with the variables above set (a topic `orders` and the table must exist).

use std::time::Duration;

use sdk::FallbackError;
use sdk::config::ProcessEnv;
use sdk::fallback::{Event, FallbackProducer, Outcome};
use wire::envelope::Envelope;
use wire::record::{EventId, Header};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Once per process: the producer holds the Kafka connection and each key's state.
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let producer = FallbackProducer::from_env(&ProcessEnv, aws_sdk_dynamodb::Client::new(&aws))?;

    // The value carries its schema version in the prefix consumers read first.
    let value = Envelope::confluent(3, br#"{"order_id":"o-1","status":"paid"}"#).encode();
    let mut event = Event::new("orders", Some(b"customer-42".to_vec()), value);
    event.headers.push(Header::new("trace-id", "abc123"));

    // The id is minted once, when the event is created, and kept across retries: a retry after
    // an ambiguous error then produces at most a duplicate under the same id, which consumers
    // drop. (Ids order a key's events in the standby table: never mint one for an old event.)
    let event_id = EventId::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match producer.send_with_id(event.clone(), event_id).await {
            Ok(delivery) => {
                match delivery.outcome {
                    Outcome::Kafka { partition, offset } => {
                        println!("{event_id}: in Kafka at partition {partition}, offset {offset}");
                    }
                    // Safe: the republisher publishes it, in its key's order, once Kafka is back.
                    Outcome::Standby { reason } => {
                        println!(
                            "{event_id}: Kafka unavailable ({reason}); waiting in the standby table"
                        );
                    }
                    // Kafka will never take this event (too large, unknown topic, …): it is in
                    // the dead-letter topic with the reason; an operator repairs and redrives it.
                    Outcome::DeadLettered { reason } => {
                        eprintln!("{event_id}: rejected by Kafka ({reason}); dead-lettered");
                    }
                }
                return Ok(());
            }
            // Too large for Kafka and for DynamoDB's item limit: only the application can act
            // (split it, or store the payload elsewhere and send a reference).
            Err(error @ FallbackError::TooLargeForStandby { .. }) => return Err(error.into()),
            // Kafka and the standby table both failed: the event is still ours. Retry with the
            // same id, then give up to the caller (fail the request that produced the event).
            Err(error) if attempt < 3 => {
                eprintln!("{event_id}: not accepted yet ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
