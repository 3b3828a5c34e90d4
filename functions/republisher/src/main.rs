//! Lambda binary: builds the clients once per execution environment, then hands every
//! invocation to [`republisher::handle`].

// The handler's future nests the engine's, the sweep's and the standby adapter's; computing its
// layout goes deeper than rustc's default query depth.
#![recursion_limit = "256"]

use lambda_runtime::{Error, service_fn};
use republisher::handler::App;
use sdk::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let app = App::from_env(&ProcessEnv).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event| republisher::handle(app, event))).await
}
