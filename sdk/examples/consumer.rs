//! A consumer application's whole use of the SDK: build the consumer once, give it a handler,
//! run it until SIGTERM/Ctrl-C. Copy it into a service.
//!
//! Needs `KAFKA_BOOTSTRAP_SERVERS` (and, in AWS, `AWS_REGION` for MSK IAM and Glue). Reads the
//! topic `orders` as group `order-service`; the topics `orders-retry-1`, `orders-retry-2` and
//! `order-service-dlt` must exist. Against the local stack: `make stack-up`, then
//! `set -a; . .stack/stack.env; set +a; cargo run -p sdk --example consumer`.

use std::sync::Arc;
use std::time::Duration;

use sdk::config::ProcessEnv;
use sdk::consumer::dedupe::MemoryDedupe;
use sdk::consumer::retry::{HandlerError, RetryPolicy};
use sdk::consumer::{ConsumedEvent, Consumer, ConsumerSettings};
use sdk::kafka::KafkaSettings;
use sdk::schema::{GlueRegistry, Payload, SchemaCache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let schemas = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&aws),
    ))));
    let kafka = KafkaSettings::from_env(&ProcessEnv, "order-service", Duration::from_secs(10))?;
    let settings = ConsumerSettings {
        // Three quick attempts in place, then orders-retry-1 after 10 s, orders-retry-2 after a
        // minute, then the dead-letter topic. `delays: vec![]` keeps each key's order instead.
        retry: RetryPolicy {
            delays: vec![Duration::from_secs(10), Duration::from_secs(60)],
            ..RetryPolicy::default()
        },
        ..ConsumerSettings::new("order-service", vec!["orders".into()], "order-service-dlt")
    };
    let consumer = Consumer::new(
        kafka,
        settings,
        schemas,
        Arc::new(MemoryDedupe::default()),
        handle,
    );
    // Finishes the records in hand and commits before returning.
    consumer
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The application's logic. The event arrived validated against the schema version it was
/// written with; its id is what duplicates share.
async fn handle(event: Arc<ConsumedEvent>) -> Result<(), HandlerError> {
    let Payload::Json(order) = &event.payload else {
        return Err(HandlerError::NonRetriable("expected a JSON order".into()));
    };
    match order["status"].as_str() {
        Some("paid") => {
            println!(
                "order {} paid (event {:?}, attempt {})",
                order["order_id"], event.event_id, event.attempt
            );
            Ok(())
        }
        // A dependency that may come back: retried (in place, then through the retry topics).
        Some("pending") => Err(HandlerError::Retriable("payment not settled yet".into())),
        // Never valid for this service: straight to the dead-letter topic, with the reason.
        _ => Err(HandlerError::NonRetriable("unknown order status".into())),
    }
}
