//! The topics the platform's functions may publish events to: the same list the template turns
//! into the functions' Kafka IAM grants (`EventTopics`), read from `EVENT_TOPICS`.
//!
//! The standby table is writable by every producer, and the republisher publishes with its own
//! rights, so it must not publish wherever an item says: an item whose topic is not on this list
//! is dead-lettered as malformed, never published (the same for `standbyctl replay` and
//! `standbyctl dlt redrive`). Entries are exact topic names or name prefixes ending in `*`, as
//! in an IAM resource pattern; a bare `*` is refused, so the list never means "everything".

use std::fmt;

use sdk::ConfigError;
use sdk::config::{self, Env};

pub const EVENT_TOPICS: &str = "EVENT_TOPICS";

const EXPECTED: &str = "comma-separated topic names or prefixes ending in `*` (not a bare `*`), \
     each of the characters Kafka allows in topic names (A-Z a-z 0-9 . _ -)";

/// Kafka's topic-name characters, at least one.
pub fn legal_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// The topics events may be published to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicAllowList(Vec<Pattern>);

impl TopicAllowList {
    /// Reads [`EVENT_TOPICS`]; it is required.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let value = config::required(env, EVENT_TOPICS, "topics events may be published to")?;
        Self::parse(&value).ok_or(ConfigError::Invalid {
            var: EVENT_TOPICS,
            value,
            expected: EXPECTED,
        })
    }

    /// `None` when any entry is empty, a bare `*`, has `*` anywhere but at its end, or has a
    /// character Kafka does not allow in topic names.
    pub fn parse(text: &str) -> Option<Self> {
        text.split(',')
            .map(str::trim)
            .map(|entry| match entry.strip_suffix('*') {
                Some(prefix) if legal_name(prefix) => Some(Pattern::Prefix(prefix.to_string())),
                None if legal_name(entry) => Some(Pattern::Exact(entry.to_string())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }

    /// Whether events may be published to `topic`. A name with a character Kafka does not
    /// allow (a `#`, which would also confuse partition keys) never matches.
    pub fn permits(&self, topic: &str) -> bool {
        legal_name(topic)
            && self.0.iter().any(|pattern| match pattern {
                Pattern::Exact(name) => name == topic,
                Pattern::Prefix(prefix) => topic.starts_with(prefix.as_str()),
            })
    }

    /// Why `topic` is refused, for the dead-letter reason and the operator.
    pub fn refusal(&self, topic: &str) -> String {
        format!("topic {topic:?} is not in {EVENT_TOPICS} ({self})")
    }
}

impl fmt::Display for TopicAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pattern) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match pattern {
                Pattern::Exact(name) => f.write_str(name)?,
                Pattern::Prefix(prefix) => write!(f, "{prefix}*")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn exact_names_and_prefixes() {
        let list = TopicAllowList::parse("orders.*, payments").unwrap();
        assert!(list.permits("orders.created"));
        assert!(list.permits("orders."));
        assert!(list.permits("payments"));
        assert!(!list.permits("payments.v2"));
        assert!(!list.permits("order"));
        assert!(!list.permits("audit"));
        assert!(!list.permits("orders.x#k#00"), "not a Kafka topic name");
        assert_eq!(list.to_string(), "orders.*,payments");
        assert_eq!(
            list.refusal("audit"),
            "topic \"audit\" is not in EVENT_TOPICS (orders.*,payments)"
        );
    }

    #[test]
    fn everything_and_malformed_lists_are_refused() {
        for text in [
            "*", "orders,*", "", " ", "a,,b", "or*ders", "orders#x", "a b", "*orders",
        ] {
            assert_eq!(TopicAllowList::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_variable_is_required_and_named_in_errors() {
        let env: HashMap<&str, &str> = HashMap::new();
        assert!(
            TopicAllowList::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains(EVENT_TOPICS)
        );
        let env = HashMap::from([(EVENT_TOPICS, "*")]);
        let err = TopicAllowList::from_env(&env).unwrap_err().to_string();
        assert!(err.contains("bare"), "{err}");
    }
}
