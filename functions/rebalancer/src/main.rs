//! The rebalancer Lambda: moves partition replicas onto newly added brokers.
//!
//! Not built yet (issue #5): every invocation fails with a clear error instead of
//! pretending to succeed.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Err("the rebalancer is not implemented yet (issue #5)".into())
}
