//! Lambda binary: builds the MSK, CloudWatch and DynamoDB clients once, then hands every
//! invocation to [`autoscaler::handler::handle`].

use autoscaler::handler::{App, handle};
use lambda_runtime::{Error, service_fn};
use sdk::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let app = App::from_env(&ProcessEnv).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event| handle(app, event))).await
}
