//! Lambda binary: builds the MSK, CloudWatch and DynamoDB clients once, then hands every
//! invocation to [`autoscaler::handler::handle`].

use autoscaler::aws::{CloudWatch, Msk};
use autoscaler::handler::{App, handle};
use autoscaler::settings::Settings;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sdk::config::ProcessEnv;
use serde_json::Value;
use shared::state_table::StateTable;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init_logging();
    let settings = Settings::from_env(&ProcessEnv)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = App {
        control: Msk::new(aws_sdk_kafka::Client::new(&aws)),
        metrics: CloudWatch::new(aws_sdk_cloudwatch::Client::new(&aws)),
        state: StateTable::new(aws_sdk_dynamodb::Client::new(&aws), &settings.state_table),
        settings,
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(app, event.payload)
            .await
            .map(|report| serde_json::to_value(report).expect("report serializes"))
    }))
    .await
}
