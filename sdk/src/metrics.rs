//! CloudWatch Embedded Metric Format: a [`Metrics`] collects counts and timings and
//! [`Metrics::emit`] prints them as one EMF line on stdout, which Lambda (or the CloudWatch
//! agent, for a service) ships to CloudWatch Logs, where they become metrics: no API call, no
//! extra latency. Written by hand (one small JSON object) rather than through
//! `metrics_cloudwatch_embedded`, which installs a global `metrics` recorder and pulls
//! `lambda_http` into every binary. The functions and the consumer SDK both emit through it.
//!
//! What each component emits is declared once, as a [`Family`]: its namespace, its dimensions
//! and every metric name. Emitters build their [`Metrics`] from their family and cannot record
//! a name it does not declare (checked in debug builds, so by every test that emits); the
//! template's alarms and dashboard are checked against the families (`tests/deployment`).

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

static EMF_ON_STDOUT: AtomicBool = AtomicBool::new(true);

/// Turns the EMF lines on stdout off (or on again): for local tools such as the demo, where
/// stdout is a terminal, not CloudWatch Logs.
pub fn emit_metrics_to_stdout(enabled: bool) {
    EMF_ON_STDOUT.store(enabled, Ordering::Relaxed);
}

/// CloudWatch units this project uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Percent,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
            Self::Percent => "Percent",
        }
    }
}

/// The metrics one component emits: the contract between its code and the operators' alarms
/// and dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Who emits it, for messages.
    pub component: &'static str,
    /// The namespace it is emitted under (unless the user configured another).
    pub namespace: &'static str,
    /// The dimension names every document carries, in order.
    pub dimensions: &'static [&'static str],
    /// Every metric name it may emit.
    pub metrics: &'static [&'static str],
}

impl Family {
    /// An empty set of this family's metrics, with `values` for its dimensions in order.
    pub fn metrics(&'static self, values: &[&str]) -> Metrics {
        self.metrics_in(self.namespace, values)
    }

    /// As [`Self::metrics`], under a namespace the user chose.
    pub fn metrics_in(&'static self, namespace: &str, values: &[&str]) -> Metrics {
        debug_assert_eq!(
            values.len(),
            self.dimensions.len(),
            "{}: one value per dimension {:?}",
            self.component,
            self.dimensions
        );
        Metrics {
            namespace: namespace.to_string(),
            dimensions: self
                .dimensions
                .iter()
                .zip(values)
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            values: Vec::new(),
            family: Some(self),
        }
    }
}

/// A set of metric values sharing a namespace and dimensions, emitted as one EMF document.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    dimensions: Vec<(String, String)>,
    values: Vec<(String, Unit, Vec<f64>)>,
    family: Option<&'static Family>,
}

impl Metrics {
    /// Metrics outside any declared family (tools, tests); components use [`Family::metrics`].
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            dimensions: Vec::new(),
            values: Vec::new(),
            family: None,
        }
    }

    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// The metric names recorded so far, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(name, _, _)| name.as_str())
    }

    /// Adds one observation of `name`; repeated observations are kept as an EMF value array.
    pub fn record(&mut self, name: &str, unit: Unit, value: f64) {
        if let Some(family) = self.family {
            debug_assert!(
                family.metrics.contains(&name),
                "{} emits {name}, which its metrics family does not declare",
                family.component
            );
        }
        match self.values.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, _, values)) => values.push(value),
            None => self.values.push((name.to_string(), unit, vec![value])),
        }
    }

    pub fn count(&mut self, name: &str, value: u64) {
        self.record(name, Unit::Count, value as f64);
    }

    pub fn millis(&mut self, name: &str, value: f64) {
        self.record(name, Unit::Milliseconds, value);
    }

    /// The EMF document, or `None` when nothing was recorded.
    pub fn to_emf(&self, timestamp_ms: u64) -> Option<Value> {
        if self.values.is_empty() {
            return None;
        }
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [self.dimensions.iter().map(|(name, _)| name).collect::<Vec<_>>()],
                    "Metrics": self.values.iter()
                        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            document.insert(name.clone(), Value::String(value.clone()));
        }
        for (name, _, values) in &self.values {
            let value = match values.as_slice() {
                [single] => json!(single),
                many => json!(many),
            };
            document.insert(name.clone(), value);
        }
        Some(Value::Object(document))
    }

    /// Prints the EMF line on stdout (where Lambda collects it) and clears the values.
    pub fn emit(&mut self) {
        let now_ms = wire::clock::now_ms();
        if let Some(document) = self.to_emf(now_ms)
            && EMF_ON_STDOUT.load(Ordering::Relaxed)
        {
            println!("{document}");
        }
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_shape() {
        let mut metrics = Metrics::new("StandbyEvents").dimension("FunctionName", "republisher");
        metrics.count("Republished", 10);
        metrics.millis("PublishLatency", 4.5);
        metrics.millis("PublishLatency", 5.5);
        let document = metrics.to_emf(1_700_000_000_000).unwrap();
        assert_eq!(
            document,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "StandbyEvents",
                        "Dimensions": [["FunctionName"]],
                        "Metrics": [
                            {"Name": "Republished", "Unit": "Count"},
                            {"Name": "PublishLatency", "Unit": "Milliseconds"}
                        ]
                    }]
                },
                "FunctionName": "republisher",
                "Republished": 10.0,
                "PublishLatency": [4.5, 5.5]
            })
        );
    }

    static FAMILY: Family = Family {
        component: "test",
        namespace: "Test",
        dimensions: &["FunctionName"],
        metrics: &["Declared"],
    };

    #[test]
    fn a_family_names_its_namespace_and_dimensions() {
        let mut metrics = FAMILY.metrics(&["f"]);
        metrics.count("Declared", 1);
        let document = metrics.to_emf(0).unwrap();
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Test"
        );
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"]])
        );
        assert_eq!(document["FunctionName"], "f");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "does not declare")]
    fn a_family_refuses_a_name_it_does_not_declare() {
        FAMILY.metrics(&["f"]).count("Undeclared", 1);
    }

    #[test]
    fn nothing_recorded_nothing_emitted() {
        assert!(Metrics::new("X").to_emf(0).is_none());
    }
}
