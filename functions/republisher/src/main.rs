//! Lambda binary: builds the clients once per execution environment, then hands every
//! invocation to [`republisher::handle`].

use lambda_runtime::{Error, LambdaEvent, service_fn};
use republisher::handler::App;
use serde_json::Value;
use shared::config::ProcessEnv;

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
