//! The autoscaler Lambda: adds MSK brokers when broker CPU stays high.
//!
//! Not built yet (issue #4): every invocation fails with a clear error instead of
//! pretending to succeed.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Err("the autoscaler is not implemented yet (issue #4)".into())
}
