//! The HTTP handler: routes a request, and for a publish runs the steps in order (each refusing
//! the whole request before anything is published, until the last):
//!
//! The steps after reading the body are [`crate::batch`]'s.
//!
//! 1. **Authenticate** the bearer token (`401`; `503` if the issuer's keys cannot be had).
//! 2. **Authorize**: the event type exists, is enabled and names the caller among its writers
//!    (`403`, with the same body whether or not the type exists).
//! 3. **Read** the body (`415`, `400`, `413`).
//! 4. **Validate** every event: its fields, its partition key, its schema (`422`, every bad
//!    event named with the JSON pointer at fault, the others `aborted`).
//! 5. **Enrich**: each event's id, minted or (for a caller's id seen before) the one recorded.
//! 6. **Publish** through the producer fallback, key by key (`200`, `207`, `503`).

use std::sync::Arc;

use aws_config::SdkConfig;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use sdk::config::Env;
use sdk::fallback::FallbackProducer;
use sdk::metrics::{Family, Metrics};
use sdk::schema::GlueRegistry;
use serde::Serialize;
use shared::topics::TopicAllowList;
use thiserror::Error;

use crate::auth::{AuthError, Authenticator};
use crate::batch::{assign_ids, publish_ready, reused_ids, validate};
use crate::body::{self, Limits};
use crate::event_types::{Caller, EventTypeStore, EventTypes};
use crate::ids::IdAssigner;
use crate::response::{Delivery, EventResult, Problem, RETRY_AFTER_SECONDS, Status, batch_status};
use crate::settings::Settings;

#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] sdk::ConfigError),
    #[error(transparent)]
    Producer(#[from] sdk::SetupError),
    #[error(transparent)]
    Auth(#[from] crate::auth::SetupError),
}

/// What every invocation shares; built once per execution environment.
pub struct App {
    /// The `FunctionName` dimension of its metrics.
    function_name: String,
    auth: Authenticator,
    types: EventTypes,
    pub(crate) ids: IdAssigner,
    pub(crate) producer: FallbackProducer,
    topics: TopicAllowList,
    limits: Limits,
}

impl App {
    pub async fn from_env(env: &impl Env) -> Result<Self, InitError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(env, &aws)
    }

    /// Builds the app against the AWS services `aws` points at (tests: the local stack).
    pub fn new(env: &impl Env, aws: &SdkConfig) -> Result<Self, InitError> {
        let settings = Settings::from_env(env)?;
        let dynamodb = aws_sdk_dynamodb::Client::new(aws);
        let registry = Arc::new(GlueRegistry::new(aws_sdk_glue::Client::new(aws)));
        Ok(Self {
            function_name: env
                .var("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "gateway".into()),
            auth: Authenticator::new(settings.jwt)?,
            types: EventTypes::new(
                EventTypeStore::new(dynamodb.clone(), settings.event_types_table),
                registry,
                settings.event_types_ttl,
            ),
            ids: IdAssigner::new(dynamodb.clone(), settings.ids_table, settings.id_window),
            producer: FallbackProducer::from_env(env, dynamodb)?,
            topics: settings.topics,
            limits: settings.limits,
        })
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    ListTypes,
    Publish(&'a str),
    NotFound,
    MethodNotAllowed(&'static str),
}

/// Routes by the path's last segments, so the same function serves API Gateway's paths and a
/// function URL's (`/lambda-url/<function>/…` locally).
pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        [.., "event-types"] if method == Method::GET => Route::ListTypes,
        [.., "event-types"] => Route::MethodNotAllowed("GET"),
        [.., "event-types", name, "events"] if method == Method::POST => Route::Publish(name),
        [.., "event-types", _, "events"] => Route::MethodNotAllowed("POST"),
        _ => Route::NotFound,
    }
}

/// Answers one request; every failure is an HTTP answer, never a function error.
pub async fn handle(
    app: &App,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let (response, results) = match route(&method, &path) {
        Route::ListTypes => (list_types(app, &request).await, Vec::new()),
        Route::Publish(name) => publish_events(app, name, &request).await,
        Route::NotFound => (
            problem(Problem::new(404, "Not Found", "no such resource")),
            Vec::new(),
        ),
        Route::MethodNotAllowed(allowed) => {
            let mut response = problem(Problem::new(
                405,
                "Method Not Allowed",
                format!("use {allowed}"),
            ));
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
            (response, Vec::new())
        }
    };
    request_metrics(
        &app.function_name,
        response.status().as_u16(),
        &results,
        started.elapsed(),
    )
    .emit();
    if !results.is_empty() {
        // Lambda may freeze this environment after the answer, for good: the producer's counts
        // are written now rather than by a later send.
        app.producer.emit_metrics();
    }
    Ok(response)
}

/// What the gateway emits: one document per request with the request's outcome by class, what
/// became of its events, and its latency.
pub static METRICS: Family = Family {
    component: "gateway",
    namespace: "StandbyEvents",
    dimensions: &["FunctionName"],
    metrics: &[
        "Requests",
        "Answered",
        "Unauthorized",
        "Forbidden",
        "InvalidBatches",
        "RefusedRequests",
        "Unavailable",
        "ServerErrors",
        "EventsToKafka",
        "EventsToStandby",
        "EventsInvalid",
        "EventsFailed",
        "EventsAborted",
        "Latency",
    ],
};

/// The document for one request answered with `status`.
pub fn request_metrics(
    function_name: &str,
    status: u16,
    results: &[EventResult],
    latency: std::time::Duration,
) -> Metrics {
    let mut metrics = METRICS.metrics(&[function_name]);
    metrics.count("Requests", 1);
    let class = match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        422 => "InvalidBatches",
        503 => "Unavailable",
        400..=499 => "RefusedRequests",
        500..=599 => "ServerErrors",
        _ => "Answered",
    };
    metrics.count(class, 1);
    let count = |wanted: Status, delivery: Option<Delivery>| {
        results
            .iter()
            .filter(|r| {
                r.publishing_status == wanted && (delivery.is_none() || r.delivery == delivery)
            })
            .count() as u64
    };
    metrics.count(
        "EventsToKafka",
        count(Status::Submitted, Some(Delivery::Kafka)),
    );
    metrics.count(
        "EventsToStandby",
        count(Status::Submitted, Some(Delivery::Standby)),
    );
    let invalid = status == 422;
    let failed = count(Status::Failed, None);
    metrics.count("EventsInvalid", if invalid { failed } else { 0 });
    metrics.count("EventsFailed", if invalid { 0 } else { failed });
    metrics.count("EventsAborted", count(Status::Aborted, None));
    metrics.millis("Latency", latency.as_secs_f64() * 1000.0);
    metrics
}

fn header_text(request: &Request, name: header::HeaderName) -> Option<&str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn authenticate(app: &App, request: &Request) -> Result<Caller, Response<Body>> {
    app.auth
        .authenticate(header_text(request, header::AUTHORIZATION))
        .await
        .map_err(|error| match error {
            AuthError::KeysUnavailable(_) => {
                tracing::error!(%error, "cannot authenticate callers");
                retry_later(problem(Problem::new(
                    503,
                    "Service Unavailable",
                    "callers cannot be authenticated right now",
                )))
            }
            AuthError::Missing | AuthError::Rejected(_) => {
                tracing::info!(%error, "request not authenticated");
                // RFC 6750: no error code when the request carried no token.
                let challenge = match error {
                    AuthError::Missing => "Bearer",
                    _ => "Bearer error=\"invalid_token\"",
                };
                let mut response = problem(Problem::new(401, "Unauthorized", error.to_string()));
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                response
            }
        })
}

#[derive(Serialize)]
struct ListedType<'a> {
    name: &'a str,
    schema: SchemaRef<'a>,
    partition_key: Option<&'a str>,
}

#[derive(Serialize)]
struct SchemaRef<'a> {
    registry: &'a str,
    name: &'a str,
    version_id: String,
    version: Option<i64>,
    definition: serde_json::Value,
}

async fn list_types(app: &App, request: &Request) -> Response<Body> {
    let caller = match authenticate(app, request).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let types = match app.types.all().await {
        Ok(types) => types,
        Err(error) => return unavailable(&error),
    };
    let mut resolved = Vec::new();
    for event_type in types.into_iter().filter(|t| t.admits(&caller)) {
        // One type whose schema cannot be had does not hide the others.
        match app.types.resolve(event_type).await {
            Ok(t) => resolved.push(t),
            Err(error) => tracing::error!(%error, "an event type left out of the listing"),
        }
    }
    let listed: Vec<ListedType> = resolved
        .iter()
        .map(|t| ListedType {
            name: &t.event_type.name,
            schema: SchemaRef {
                registry: &t.event_type.schema_registry,
                name: &t.event_type.schema_name,
                version_id: t.schema.id().to_string(),
                version: t.version_number,
                definition: serde_json::from_str(&t.definition).unwrap_or(serde_json::Value::Null),
            },
            partition_key: t.event_type.partition_key.as_deref(),
        })
        .collect();
    json_response(200, &listed)
}

/// The answer, and the per-event results it carries (empty when refused as a whole).
async fn publish_events(
    app: &App,
    name: &str,
    request: &Request,
) -> (Response<Body>, Vec<EventResult>) {
    let caller = match authenticate(app, request).await {
        Ok(caller) => caller,
        Err(response) => return (response, Vec::new()),
    };
    // Who may publish is decided on the type alone, before its schema is looked at.
    let event_type = match app.types.get(name).await {
        Ok(Some(event_type)) if event_type.admits(&caller) => event_type,
        Ok(_) => {
            tracing::info!(
                client_id = caller.client_id,
                event_type = name,
                "not a writer of the event type (or no such type)"
            );
            return refused(Problem::new(
                403,
                "Forbidden",
                "you may not publish events of this type (or there is no such type)",
            ));
        }
        Err(error) => return (unavailable(&error), Vec::new()),
    };
    if !app.topics.permits(&event_type.topic) {
        tracing::error!(event_type = name, reason = %app.topics.refusal(&event_type.topic), "an event type's topic is not one the gateway may write");
        return refused(Problem::new(
            500,
            "Event Type Misconfigured",
            "events of this type cannot be published; the platform's operators were told",
        ));
    }
    let resolved = match app.types.resolve(event_type).await {
        Ok(resolved) => resolved,
        Err(error) => return (unavailable(&error), Vec::new()),
    };

    let submitted = match body::format_of(header_text(request, header::CONTENT_TYPE))
        .and_then(|format| body::parse(format, name, request.body(), &app.limits))
    {
        Ok(submitted) => submitted,
        Err(rejection) => {
            return refused(Problem::new(
                rejection.status,
                rejection.title,
                rejection.detail,
            ));
        }
    };

    let ready = match validate(&resolved, submitted) {
        Ok(ready) => ready,
        Err(results) => {
            tracing::info!(
                client_id = caller.client_id,
                event_type = name,
                invalid = results
                    .iter()
                    .filter(|r| r.publishing_status == Status::Failed)
                    .count(),
                "batch refused: invalid events"
            );
            return (json_response(422, &results), results);
        }
    };

    let ids = match assign_ids(app, &caller, name, &ready).await {
        Ok(Ok(ids)) => ids,
        Ok(Err(conflicts)) => {
            let results = reused_ids(&ready, &conflicts, app.ids.window());
            tracing::info!(
                client_id = caller.client_id,
                event_type = name,
                reused = conflicts.len(),
                "batch refused: ids given to other events"
            );
            return (json_response(422, &results), results);
        }
        Err(error) => {
            tracing::error!(%error, "could not assign event ids");
            return (
                retry_later(problem(Problem::new(
                    503,
                    "Service Unavailable",
                    "the events' ids could not be recorded; nothing was published, retry later",
                ))),
                Vec::new(),
            );
        }
    };

    let results = publish_ready(app, &caller, &resolved, ready, ids).await;
    let transient = results.iter().filter(|(_, transient)| *transient).count();
    let results: Vec<EventResult> = results.into_iter().map(|(result, _)| result).collect();
    let (status, retry) = batch_status(&results, transient);
    tracing::info!(
        client_id = caller.client_id,
        event_type = name,
        events = results.len(),
        status,
        "batch published"
    );
    let response = json_response(status, &results);
    let response = if retry {
        retry_later(response)
    } else {
        response
    };
    (response, results)
}

fn refused(problem: Problem) -> (Response<Body>, Vec<EventResult>) {
    (self::problem(problem), Vec::new())
}

fn unavailable(error: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(%error, "event types unavailable");
    retry_later(problem(Problem::new(
        503,
        "Service Unavailable",
        "event types cannot be read right now; nothing was published, retry later",
    )))
}

fn retry_later(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

fn problem(problem: Problem) -> Response<Body> {
    with_body(problem.status, "application/problem+json", &problem)
}

fn json_response(status: u16, value: &impl Serialize) -> Response<Body> {
    with_body(status, "application/json", value)
}

fn with_body(status: u16, content_type: &'static str, value: &impl Serialize) -> Response<Body> {
    let mut response = Response::new(Body::Text(
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    ));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_of_answer_together_emits_every_metric_of_the_family() {
        let mut emitted = std::collections::BTreeSet::new();
        for status in [200, 401, 403, 422, 429, 500, 503] {
            let metrics = request_metrics("gateway", status, &[], std::time::Duration::ZERO);
            emitted.extend(metrics.names().map(str::to_string));
        }
        let declared: std::collections::BTreeSet<String> =
            METRICS.metrics.iter().map(|m| m.to_string()).collect();
        assert_eq!(emitted, declared);
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/event-types"), Route::ListTypes);
        assert_eq!(route(&Method::GET, "/event-types/"), Route::ListTypes);
        assert_eq!(
            route(&Method::POST, "/event-types/order-created/events"),
            Route::Publish("order-created")
        );
        assert_eq!(
            route(
                &Method::POST,
                "/lambda-url/gateway/event-types/order-created/events"
            ),
            Route::Publish("order-created")
        );
        assert_eq!(
            route(&Method::GET, "/event-types/order-created/events"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(
            route(&Method::POST, "/event-types"),
            Route::MethodNotAllowed("GET")
        );
        assert_eq!(route(&Method::GET, "/topics"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
    }
}
