//! Lambda binary: builds the authenticator, the event types cache, the ids table and the
//! producer fallback once, then answers every HTTP request with [`gateway::handler::handle`].

use gateway::handler::{App, handle};
use lambda_http::{Error, service_fn};
use sdk::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let app = App::from_env(&ProcessEnv).await?;
    let app = &app;
    lambda_http::run(service_fn(move |request| handle(app, request))).await
}
