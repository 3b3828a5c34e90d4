//! Lambda binary; with a command (`describe`, `plan`) it is also the operators' offline tool.

use clap::Parser;
use lambda_runtime::{Error, service_fn};
use rebalancer::handler::{App, handle};
use sdk::config::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), Error> {
    if let Some(command) = rebalancer::cli::Cli::parse().command {
        return Ok(rebalancer::cli::run(command).await?);
    }
    shared::telemetry::init_logging();
    let app = App::from_env(&ProcessEnv).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event| handle(app, event))).await
}
