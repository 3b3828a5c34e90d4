//! The sample events in `events/republisher/` are what Lambda sends, and read as intended:
//! each parses with `aws_lambda_events`, survives a serialize/parse round trip, and becomes the
//! expected entries. (`make invoke` sends the same files through the Lambda runtime emulator.)

use std::path::PathBuf;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use republisher::entry::{SkipReason, Work, from_stream_event};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/republisher")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn kinds(name: &str) -> Vec<String> {
    let event = load(name);
    let parsed: StreamEvent = serde_json::from_value(event.clone()).unwrap();
    let again: StreamEvent =
        serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
    assert_eq!(
        parsed, again,
        "{name} round-trips through aws_lambda_events"
    );
    from_stream_event(&event)
        .unwrap()
        .into_iter()
        .map(|entry| match entry.work {
            Work::Publish(record) => format!("publish {}", record.topic),
            Work::Skip(SkipReason::Removed) => "skip removed".into(),
            Work::Skip(SkipReason::ExpiredByTtl) => "skip ttl".into(),
            Work::Skip(SkipReason::Marker) => "skip marker".into(),
            Work::Skip(SkipReason::AlreadyRepublished) => "skip done".into(),
            Work::Malformed { kind, .. } => format!("malformed {kind}"),
        })
        .collect()
}

#[test]
fn stream_fixtures_read_as_intended() {
    assert_eq!(kinds("stream-insert.json"), ["publish orders"]);
    assert_eq!(kinds("stream-modify.json"), ["publish orders"]);
    assert_eq!(kinds("stream-remove-ttl.json"), ["skip ttl"]);
    assert_eq!(
        kinds("stream-malformed.json"),
        ["malformed missing_attribute"]
    );
    assert_eq!(
        kinds("stream-mixed-batch.json"),
        [
            "publish orders",
            "publish orders",
            "malformed missing_attribute",
            "skip removed",
            "publish orders",
            "skip ttl"
        ]
    );
}

#[test]
fn sweep_fixture_is_a_scheduled_event() {
    let event: EventBridgeEvent = serde_json::from_value(load("sweep-schedule.json")).unwrap();
    assert_eq!(event.detail_type, "Scheduled Event");
    assert_eq!(event.source, "aws.events");
}
