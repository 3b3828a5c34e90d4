//! What every function needs to know about how it was invoked, decided in one place: whether an
//! event is an EventBridge schedule, and the function's own name (for metric dimensions).

use sdk::config::Env;
use serde_json::Value;

/// The `detail-type` EventBridge gives scheduled events.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// Whether `event` is an EventBridge scheduled event (the sweep, the re-check, the resume).
pub fn is_scheduled(event: &Value) -> bool {
    event.get("detail-type").and_then(Value::as_str) == Some(SCHEDULED_EVENT)
}

/// The function's name as Lambda gives it to the runtime (`AWS_LAMBDA_FUNCTION_NAME`, the same
/// value every invocation's context carries), read once with the rest of the configuration;
/// `default` outside Lambda.
pub fn function_name(env: &impl Env, default: &str) -> String {
    env.var("AWS_LAMBDA_FUNCTION_NAME")
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn schedules_are_recognised_by_detail_type() {
        assert!(is_scheduled(
            &json!({"detail-type": "Scheduled Event", "source": "aws.events"})
        ));
        assert!(!is_scheduled(
            &json!({"detail-type": "CloudWatch Alarm State Change"})
        ));
        assert!(!is_scheduled(&json!({"Records": []})));
    }

    #[test]
    fn the_function_name_falls_back_outside_lambda() {
        let lambda = HashMap::from([("AWS_LAMBDA_FUNCTION_NAME", "prod-republisher")]);
        assert_eq!(function_name(&lambda, "republisher"), "prod-republisher");
        let elsewhere: HashMap<&str, &str> = HashMap::new();
        assert_eq!(function_name(&elsewhere, "republisher"), "republisher");
    }
}
