//! Lambda binary; with a command (`describe`, `plan`) it is also the operators' offline tool.

use clap::Parser;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use rebalancer::handler::{Handoffs, handle};
use rebalancer::settings::Settings;
use sdk::config::ProcessEnv;
use serde_json::Value;
use shared::state_table::StateTable;

#[tokio::main]
async fn main() -> Result<(), Error> {
    if let Some(command) = rebalancer::cli::Cli::parse().command {
        return Ok(rebalancer::cli::run(command).await?);
    }
    shared::telemetry::init_logging();
    let settings = Settings::from_env(&ProcessEnv)?;
    let state = match &settings.handoff {
        Some((table, _)) => {
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Some(StateTable::new(aws_sdk_dynamodb::Client::new(&aws), table))
        }
        None => None,
    };
    let (settings, state) = (&settings, &state);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = shared::deadline::from_lambda_ms(event.context.deadline);
        let handoffs = match (state, &settings.handoff) {
            (Some(state), Some((_, cluster_arn))) => Some(Handoffs { state, cluster_arn }),
            _ => None,
        };
        handle(settings, handoffs, event.payload, deadline).await
    }))
    .await
}
