//! The republisher Lambda: drains the standby table into Kafka.
//!
//! Not built yet (issue #3): every invocation fails with a clear error instead of pretending to
//! succeed.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Err("the republisher is not implemented yet (issue #3)".into())
}
