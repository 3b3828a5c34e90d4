//! Lambda binary: builds the clients once per execution environment, then hands every
//! invocation to [`republisher::handle`].

// The handler's future nests the engine's, the sweep's and the standby adapter's; computing its
// layout goes deeper than rustc's default query depth.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use republisher::handler::App;
use sdk::config::ProcessEnv;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let app = App::from_env(&ProcessEnv).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = shared::deadline::from_lambda_ms(event.context.deadline);
        republisher::handle(app, event.payload, deadline).await
    }))
    .await
}
