//! What the gateway answers: per-event results in the shape of Nakadi's publishing API (one
//! item per event, in the order sent), problem documents (RFC 9457) for requests refused as a
//! whole, and the status a batch's results add up to.

use serde::Serialize;

/// One event's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In Kafka, or safely in the standby table (the republisher delivers it).
    Submitted,
    Failed,
    /// Not attempted: another event of the batch (or of its key) failed first.
    Aborted,
}

/// How far the event got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    None,
    Validating,
    /// Assigning the event id (the ids table).
    Enriching,
    Publishing,
}

/// Where a submitted event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Kafka,
    Standby,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventResult {
    /// The event's position in the batch.
    pub index: usize,
    /// The event id consumers see (`event-id` header), once assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    /// The id the caller gave, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    pub publishing_status: Status,
    pub step: Step,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// For a failed event: the JSON pointer into the event that is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl EventResult {
    pub fn new(index: usize, caller_id: Option<String>, status: Status, step: Step) -> Self {
        Self {
            index,
            eid: None,
            caller_id,
            publishing_status: status,
            step,
            delivery: None,
            path: None,
            detail: None,
        }
    }
}

/// Seconds a caller should wait before retrying what the gateway could not take now.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The HTTP status of a published batch, and whether to send `Retry-After`: `200` when every
/// event was submitted; `503` when none was and every failure may pass (the cluster and the
/// standby table both unavailable: overload or an outage); otherwise `207`.
pub fn batch_status(results: &[EventResult], transient_failures: usize) -> (u16, bool) {
    let submitted = results
        .iter()
        .filter(|r| r.publishing_status == Status::Submitted)
        .count();
    let failed = results
        .iter()
        .filter(|r| r.publishing_status == Status::Failed)
        .count();
    if submitted == results.len() {
        (200, false)
    } else if submitted == 0 && failed > 0 && transient_failures == failed {
        (503, true)
    } else {
        (207, transient_failures > 0)
    }
}

/// A problem document (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: title.into(),
            status,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(statuses: &[Status]) -> Vec<EventResult> {
        statuses
            .iter()
            .enumerate()
            .map(|(i, s)| EventResult::new(i, None, *s, Step::Publishing))
            .collect()
    }

    #[test]
    fn statuses_add_up() {
        use Status::*;
        assert_eq!(
            batch_status(&with(&[Submitted, Submitted]), 0),
            (200, false)
        );
        assert_eq!(batch_status(&with(&[Failed, Aborted]), 1), (503, true));
        assert_eq!(batch_status(&with(&[Failed, Failed]), 1), (207, true));
        assert_eq!(batch_status(&with(&[Submitted, Failed]), 1), (207, true));
        assert_eq!(batch_status(&with(&[Submitted, Failed]), 0), (207, false));
    }

    #[test]
    fn results_leave_out_what_they_do_not_have() {
        let json =
            serde_json::to_value(EventResult::new(0, None, Status::Aborted, Step::Validating))
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"index": 0, "publishing_status": "aborted", "step": "validating"})
        );
    }
}
