//! The steps of a publish once the request is read, and whom it is from: every event checked
//! (its key, its schema), every event given its id (minted, or the one its caller's id got
//! before), then the batch published key by key through the producer fallback.

use futures::StreamExt;
use sdk::fallback::{self, Event, FallbackProducer, Outcome};
use sdk::schema::Payload;
use thiserror::Error;
use wire::envelope::{self, Compression, SchemaId};
use wire::headers::{self, cloud_events};
use wire::record::{EventId, Header};

use crate::body::{self, Invalid, Submitted};
use crate::event_types::{Caller, Resolved};
use crate::handler::App;
use crate::ids::{self, Assignment};
use crate::publish::{self, Published};
use crate::response::{Delivery, EventResult, Status, Step};

/// Ids assigned at once, at most (DynamoDB writes in flight per request).
const ID_WRITES_IN_FLIGHT: usize = 16;

/// An event that passed validation, ready to be given its id and published.
pub(crate) struct Ready {
    index: usize,
    caller_id: Option<String>,
    /// Where its id is in the event as sent (`/metadata/eid` or `/id`).
    id_path: &'static str,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    cloud: Option<body::CloudAttributes>,
}

/// Every event's key and schema checked; all ready, or every event's result (`422`).
pub(crate) fn validate(
    resolved: &Resolved,
    submitted: Vec<Result<Submitted, Invalid>>,
) -> Result<Vec<Ready>, Vec<EventResult>> {
    let checked: Vec<(Option<String>, Result<Ready, Invalid>)> = submitted
        .into_iter()
        .enumerate()
        .map(|(index, event)| match event {
            Err(invalid) => (None, Err(invalid)),
            Ok(event) => {
                let caller_id = event.caller_id.clone();
                (caller_id, ready(resolved, index, event))
            }
        })
        .collect();
    if checked.iter().all(|(_, event)| event.is_ok()) {
        return Ok(checked
            .into_iter()
            .filter_map(|(_, event)| event.ok())
            .collect());
    }
    Err(checked
        .into_iter()
        .enumerate()
        .map(|(index, (caller_id, event))| match event {
            Ok(_) => EventResult::new(index, caller_id, Status::Aborted, Step::Validating),
            Err(invalid) => EventResult {
                path: Some(invalid.path),
                detail: Some(invalid.message),
                ..EventResult::new(index, caller_id, Status::Failed, Step::Validating)
            },
        })
        .collect())
}

/// Checks one event's partition key and schema. Paths are into the event as sent: a
/// CloudEvent's data is under `/data`.
fn ready(resolved: &Resolved, index: usize, event: Submitted) -> Result<Ready, Invalid> {
    let (data_path, id_path) = match event.cloud {
        Some(_) => ("/data", "/id"),
        None => ("", "/metadata/eid"),
    };
    let in_event =
        |invalid: Invalid| Invalid::at(format!("{data_path}{}", invalid.path), invalid.message);
    let key = resolved.event_type.key_of(&event.data).map_err(in_event)?;
    let payload = resolved
        .schema
        .encode(&Payload::Json(event.data))
        .map_err(|invalid| in_event(Invalid::at(invalid.path, invalid.message)))?;
    Ok(Ready {
        index,
        caller_id: event.caller_id,
        id_path,
        key,
        payload,
        cloud: event.cloud,
    })
}

/// The events' ids, in batch order, or the positions of events whose caller's id was given
/// to a different event within the window. Every event's id is minted first, in batch order
/// (UUIDv7 from one process increase), and a caller's id seen for the first time records that
/// same id: so a key's new events in one batch are in event-id order, whether or not they
/// carry ids (the standby table publishes a key's events in event-id order).
pub(crate) async fn assign_ids(
    app: &App,
    caller: &Caller,
    event_type: &str,
    ready: &[Ready],
) -> Result<Result<Vec<EventId>, Vec<usize>>, crate::ids::IdsError> {
    let minted: Vec<EventId> = ready.iter().map(|_| EventId::new()).collect();
    // Owned, so the futures below borrow nothing per item (they must be `Send` for any lifetime).
    let callers_ids: Vec<(usize, String, EventId, String)> = ready
        .iter()
        .zip(&minted)
        .enumerate()
        .filter_map(|(position, (event, minted))| {
            let id = event.caller_id.clone()?;
            let fingerprint = ids::fingerprint(event.key.as_deref(), &event.payload);
            Some((position, id, *minted, fingerprint))
        })
        .collect();
    let store = &app.ids;
    let client_id = caller.client_id.as_str();
    let assigned: Vec<(usize, Assignment)> = futures::stream::iter(callers_ids)
        .map(
            move |(position, caller_id, minted, fingerprint)| async move {
                store
                    .assign(client_id, event_type, &caller_id, minted, &fingerprint)
                    .await
                    .map(|assignment| (position, assignment))
            },
        )
        .buffer_unordered(ID_WRITES_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut ids = minted;
    let mut conflicts = Vec::new();
    for (position, assignment) in assigned {
        match assignment {
            Assignment::New(id) | Assignment::Earlier(id) => ids[position] = id,
            Assignment::Conflict => conflicts.push(position),
        }
    }
    if conflicts.is_empty() {
        Ok(Ok(ids))
    } else {
        conflicts.sort_unstable();
        Ok(Err(conflicts))
    }
}

/// The `422` results when callers' ids were reused for other events: those `failed`, the rest
/// `aborted`; nothing is published.
pub(crate) fn reused_ids(
    ready: &[Ready],
    conflicts: &[usize],
    window: std::time::Duration,
) -> Vec<EventResult> {
    let hours = window.as_secs() / 3600;
    ready
        .iter()
        .enumerate()
        .map(|(position, event)| {
            let caller_id = event.caller_id.clone();
            if conflicts.contains(&position) {
                EventResult {
                    path: Some(event.id_path.to_string()),
                    detail: Some(format!(
                        "this id was given to a different event within the last {hours} hours"
                    )),
                    ..EventResult::new(event.index, caller_id, Status::Failed, Step::Enriching)
                }
            } else {
                EventResult::new(event.index, caller_id, Status::Aborted, Step::Enriching)
            }
        })
        .collect()
}

/// Publishes the batch; each event's result and whether its failure may pass on a retry.
pub(crate) async fn publish_ready(
    app: &App,
    caller: &Caller,
    resolved: &Resolved,
    ready: Vec<Ready>,
    ids: Vec<EventId>,
) -> Vec<(EventResult, bool)> {
    let event_type = &resolved.event_type;
    let framing = SchemaId::Glue(resolved.schema.id());
    let described: Vec<(usize, Option<String>, EventId)> = ready
        .iter()
        .zip(&ids)
        .map(|(event, id)| (event.index, event.caller_id.clone(), *id))
        .collect();
    let outgoing: Vec<(Event, EventId)> = ready
        .into_iter()
        .zip(ids)
        .map(|(event, id)| {
            let headers = headers_of(caller, &event_type.name, &event);
            (
                Event {
                    topic: event_type.topic.clone(),
                    key: event.key,
                    value: envelope::frame(framing, Compression::None, &event.payload),
                    headers,
                },
                id,
            )
        })
        .collect();
    let outcomes = publish::publish(
        outgoing,
        |(event, _)| event.key.as_deref(),
        |(event, id)| publish_one(&app.producer, event, id),
    )
    .await;
    described
        .into_iter()
        .zip(outcomes)
        .map(|((index, caller_id, id), outcome)| {
            let eid = Some(id.to_string());
            match outcome {
                Published::Accepted(delivery) => (
                    EventResult {
                        eid,
                        delivery: Some(delivery),
                        ..EventResult::new(index, caller_id, Status::Submitted, Step::Publishing)
                    },
                    false,
                ),
                Published::Failed(refusal) => {
                    let (detail, transient) = match &refusal {
                        Refusal::DeadLettered(_) => (
                            "the platform refused the event for good (its size or content); \
                             it was set aside for the platform's operators",
                            false,
                        ),
                        Refusal::Unavailable(error) => (
                            "the platform could not take the event now; retry it with the same id",
                            error.is_transient(),
                        ),
                    };
                    tracing::error!(event_id = %id, %refusal, "a gateway event was not accepted");
                    (
                        EventResult {
                            eid,
                            detail: Some(detail.into()),
                            ..EventResult::new(index, caller_id, Status::Failed, Step::Publishing)
                        },
                        transient,
                    )
                }
                Published::Aborted => (
                    EventResult {
                        eid,
                        detail: Some("an earlier event of its key failed".into()),
                        ..EventResult::new(index, caller_id, Status::Aborted, Step::Publishing)
                    },
                    false,
                ),
            }
        })
        .collect()
}

/// Why an event was not accepted: either stops its key's later events in the batch.
#[derive(Debug, Error)]
enum Refusal {
    /// Kafka rejected it for good; the fallback dead-lettered it.
    #[error("dead-lettered: {0}")]
    DeadLettered(String),
    #[error(transparent)]
    Unavailable(sdk::FallbackError),
}

async fn publish_one(
    producer: &FallbackProducer,
    event: Event,
    id: EventId,
) -> Result<Delivery, Refusal> {
    match producer.send_with_id(event, id).await {
        Ok(fallback::Delivery { outcome, .. }) => match outcome {
            Outcome::Kafka { .. } => Ok(Delivery::Kafka),
            Outcome::Standby { .. } => Ok(Delivery::Standby),
            Outcome::DeadLettered { reason } => Err(Refusal::DeadLettered(reason)),
        },
        Err(error) => Err(Refusal::Unavailable(error)),
    }
}

/// The headers the gateway sets: who published, the caller's id, CloudEvents attributes.
/// Nothing is taken from the request's own headers.
fn headers_of(caller: &Caller, event_type: &str, event: &Ready) -> Vec<Header> {
    let mut headers = vec![Header::new(
        headers::GATEWAY_CLIENT_ID,
        caller.client_id.clone(),
    )];
    if let Some(id) = &event.caller_id {
        headers.push(Header::new(headers::GATEWAY_CALLER_EVENT_ID, id.clone()));
    }
    if let Some(cloud) = &event.cloud {
        headers.push(Header::new(cloud_events::SPECVERSION, "1.0"));
        if let Some(id) = &event.caller_id {
            headers.push(Header::new(cloud_events::ID, id.clone()));
        }
        headers.push(Header::new(cloud_events::SOURCE, cloud.source.clone()));
        headers.push(Header::new(cloud_events::TYPE, event_type));
        for (name, value) in [
            (cloud_events::TIME, &cloud.time),
            (cloud_events::SUBJECT, &cloud.subject),
        ] {
            if let Some(value) = value {
                headers.push(Header::new(name, value.clone()));
            }
        }
    }
    headers
}
