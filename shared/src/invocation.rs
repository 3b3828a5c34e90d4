//! What every function needs to know about how it was invoked, decided in one place: whether an
//! event is an EventBridge schedule, and what the invocation's Lambda context says (the
//! function's name for metric dimensions, the deadline to budget work against).

use std::time::Instant;

use lambda_runtime::Context;
use serde_json::Value;

/// The `detail-type` EventBridge gives scheduled events.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// Whether `event` is an EventBridge scheduled event (the sweep, the re-check, the resume).
pub fn is_scheduled(event: &Value) -> bool {
    event.get("detail-type").and_then(Value::as_str) == Some(SCHEDULED_EVENT)
}

/// One invocation's context, as the handlers use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The function's name as Lambda deployed it (metric dimension `FunctionName`).
    pub function_name: String,
    /// When Lambda stops the invocation.
    pub deadline: Instant,
}

impl Invocation {
    /// Reads the Lambda context. `default_name` names the function where the context carries no
    /// name (a context built by hand, as tests and the demo do).
    pub fn from_context(context: &Context, default_name: &str) -> Self {
        let name = &context.env_config.function_name;
        Self {
            function_name: if name.is_empty() {
                default_name.to_string()
            } else {
                name.clone()
            },
            deadline: crate::deadline::from_lambda_ms(context.deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

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
    fn the_context_names_the_function_and_its_deadline() {
        let mut context = Context::default();
        context.deadline = wire::clock::now_ms() + 60_000;
        context.env_config = Arc::new(lambda_runtime::Config {
            function_name: "prod-republisher".into(),
            ..Default::default()
        });
        let invocation = Invocation::from_context(&context, "republisher");
        assert_eq!(invocation.function_name, "prod-republisher");
        let remaining = invocation
            .deadline
            .saturating_duration_since(Instant::now());
        assert!(remaining > Duration::from_secs(55), "{remaining:?}");

        let by_hand = Invocation::from_context(&Context::default(), "republisher");
        assert_eq!(by_hand.function_name, "republisher");
    }
}
