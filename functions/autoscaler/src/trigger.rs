//! What invoked the autoscaler: a CloudWatch alarm (invoking the function directly, or through
//! EventBridge's "CloudWatch Alarm State Change"), or the re-check schedule.

use aws_lambda_events::cloudwatch_alarms::{CloudWatchAlarm, CloudWatchAlarmStateValue};
use serde::Deserialize;
use serde_json::Value;

use crate::decision::Signal;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "unrecognised event with keys {keys:?}: expected a CloudWatch alarm invocation (`alarmData`), an \
         EventBridge \"CloudWatch Alarm State Change\", or an EventBridge \"Scheduled Event\" (re-check)"
    )]
    Unknown { keys: Vec<String> },
    #[error("malformed {shape}: {source}")]
    Malformed {
        shape: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmChange {
    alarm_name: String,
    state: AlarmState,
}

#[derive(Debug, Deserialize)]
struct AlarmState {
    value: String,
}

fn state_name(value: &CloudWatchAlarmStateValue) -> &'static str {
    match value {
        CloudWatchAlarmStateValue::Alarm => "ALARM",
        CloudWatchAlarmStateValue::InsufficientData => "INSUFFICIENT_DATA",
        _ => "OK",
    }
}

/// Reads an invocation payload.
pub fn parse(event: &Value) -> Result<Signal, TriggerError> {
    if event.get("alarmData").is_some() {
        // Metric and composite alarms alike: the configuration is not needed, only the state.
        let alarm: CloudWatchAlarm<Value, Value> =
            serde_json::from_value(event.clone()).map_err(|source| TriggerError::Malformed {
                shape: "CloudWatch alarm invocation",
                source,
            })?;
        let state = alarm
            .alarm_data
            .state
            .as_ref()
            .map_or("INSUFFICIENT_DATA", |s| state_name(&s.value));
        return Ok(Signal::Alarm {
            name: alarm.alarm_data.alarm_name,
            state: state.to_string(),
        });
    }
    match event.get("detail-type").and_then(Value::as_str) {
        Some("CloudWatch Alarm State Change") => {
            let detail = event.get("detail").cloned().unwrap_or(Value::Null);
            let change: AlarmChange =
                serde_json::from_value(detail).map_err(|source| TriggerError::Malformed {
                    shape: "CloudWatch Alarm State Change event",
                    source,
                })?;
            Ok(Signal::Alarm {
                name: change.alarm_name,
                state: change.state.value,
            })
        }
        Some(shared::invocation::SCHEDULED_EVENT) => Ok(Signal::Recheck),
        _ => Err(TriggerError::Unknown {
            keys: event
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn direct_alarm_invocation() {
        let event: serde_json::Value = serde_json::from_str(include_str!(
            "../../../events/autoscaler/alarm-direct-alarm.json"
        ))
        .unwrap();
        assert_eq!(
            parse(&event).unwrap(),
            Signal::Alarm {
                name: "msk-broker-cpu-high".into(),
                state: "ALARM".into()
            }
        );
    }

    #[test]
    fn eventbridge_state_change_and_schedule() {
        let change = json!({
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "detail": {"alarmName": "msk-cpu", "state": {"value": "OK"}}
        });
        assert_eq!(
            parse(&change).unwrap(),
            Signal::Alarm {
                name: "msk-cpu".into(),
                state: "OK".into()
            }
        );
        let schedule =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(parse(&schedule).unwrap(), Signal::Recheck);
    }

    #[test]
    fn unknown_shapes_name_what_was_expected() {
        let err = parse(&json!({"Records": []})).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Records")
                && text.contains("alarmData")
                && text.contains("Scheduled Event"),
            "{text}"
        );
        let bad = json!({"detail-type": "CloudWatch Alarm State Change", "detail": {"state": {"value": "ALARM"}}});
        assert!(parse(&bad).unwrap_err().to_string().contains("alarmName"));
    }
}
