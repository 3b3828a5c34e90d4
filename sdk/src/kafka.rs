//! Kafka client configuration from the environment, and the client context that logs through
//! `tracing` and signs MSK IAM tokens.
//!
//! The variables are documented in `docs/configuration.md` (Kafka connection), which a test
//! checks against what [`KafkaSettings::from_env`] reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders, ToBytes};
use rdkafka::producer::{FutureProducer, FutureRecord};
use wire::record::Header;

use crate::config::{self, Env};
use crate::error::ConfigError;
use crate::msk_iam::MskIamTokenSource;

pub const BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
pub const SECURITY_PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
pub const SSL_CA_LOCATION: &str = "KAFKA_SSL_CA_LOCATION";
pub const CLIENT_ID: &str = "KAFKA_CLIENT_ID";
pub const DELIVERY_TIMEOUT_MS: &str = "KAFKA_DELIVERY_TIMEOUT_MS";
pub const AWS_REGION: &str = "AWS_REGION";

/// A message to produce, in our types. The one place a key, value and headers become an
/// `rdkafka` record: every producer of the project builds its records here.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    /// `None` is Kafka's null key.
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// The event's own headers, in order, then `extra` (what this project adds).
    pub headers: &'a [Header],
    pub extra: &'a [Header],
}

impl<'a> Message<'a> {
    /// The record, partitioned by its key with the producer's partitioner.
    pub fn record(&self) -> FutureRecord<'a, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len() + self.extra.len());
        for header in self.headers.iter().chain(self.extra) {
            headers = headers.insert(KafkaHeader {
                key: &header.name,
                value: header.value.as_deref(),
            });
        }
        FutureRecord {
            topic: self.topic,
            partition: None,
            payload: Some(self.value),
            key: self.key,
            timestamp: None,
            headers: Some(headers),
        }
    }
}

/// A consumed message's headers, in order, repeated names kept (the inverse of
/// [`Message::record`]'s header list).
pub fn headers_of(message: &impl rdkafka::Message) -> Vec<Header> {
    use rdkafka::message::Headers;
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How the client reaches the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Local stack only.
    Plaintext,
    /// TLS without client authentication.
    Tls,
    /// TLS plus SASL/OAUTHBEARER with a SigV4-signed MSK IAM token (MSK port 9098).
    MskIam { region: String },
}

impl Security {
    fn protocol(&self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Tls => "SSL",
            Self::MskIam { .. } => "SASL_SSL",
        }
    }
}

/// Everything needed to build a Kafka client, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub security: Security,
    pub ca_location: Option<String>,
    pub client_id: String,
    pub delivery_timeout: Duration,
}

impl KafkaSettings {
    /// Reads the variables in the module table; `client_id` and `delivery_timeout` are the
    /// caller's defaults.
    pub fn from_env(
        env: &impl Env,
        client_id: &str,
        delivery_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Self::read(env, client_id, Some(delivery_timeout))
    }

    /// For clients that never produce (admin clients): like [`Self::from_env`] without
    /// `KAFKA_DELIVERY_TIMEOUT_MS`.
    pub fn admin_from_env(env: &impl Env, client_id: &str) -> Result<Self, ConfigError> {
        Self::read(env, client_id, None)
    }

    fn read(
        env: &impl Env,
        client_id: &str,
        delivery_timeout: Option<Duration>,
    ) -> Result<Self, ConfigError> {
        let bootstrap_servers = config::required(
            env,
            BOOTSTRAP_SERVERS,
            "comma-separated host:port list of the Kafka brokers",
        )?;
        if let Some(bad) = bootstrap_servers
            .split(',')
            .map(str::trim)
            .find(|server| !is_host_port(server))
        {
            return Err(ConfigError::Invalid {
                var: BOOTSTRAP_SERVERS,
                value: bad.to_string(),
                expected: "host:port entries separated by commas",
            });
        }
        let protocol =
            config::optional(env, SECURITY_PROTOCOL).unwrap_or_else(|| "SASL_SSL".into());
        let security = match protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Security::Plaintext,
            "SSL" => Security::Tls,
            "SASL_SSL" => Security::MskIam {
                region: config::required(env, AWS_REGION, "region to sign the MSK IAM token for")?,
            },
            _ => {
                return Err(ConfigError::Invalid {
                    var: SECURITY_PROTOCOL,
                    value: protocol,
                    expected: "PLAINTEXT, SSL or SASL_SSL",
                });
            }
        };
        Ok(Self {
            bootstrap_servers,
            security,
            ca_location: config::optional(env, SSL_CA_LOCATION),
            client_id: config::optional(env, CLIENT_ID).unwrap_or_else(|| client_id.to_string()),
            delivery_timeout: match delivery_timeout {
                Some(default) => config::millis(env, DELIVERY_TIMEOUT_MS, default)?,
                None => Duration::from_secs(30),
            },
        })
    }

    /// Properties common to every client of ours.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("security.protocol", self.security.protocol())
            // librdkafka's default backs off up to 10 s between reconnects, so a two-second
            // outage can outlast a short delivery timeout; reconnect quickly instead.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "500");
        if let Some(ca) = &self.ca_location {
            config.set("ssl.ca.location", ca);
        }
        if matches!(self.security, Security::MskIam { .. }) {
            config.set("sasl.mechanism", "OAUTHBEARER");
        }
        config
    }

    /// An idempotent, `acks=all` producer configuration whose every message gets an answer
    /// (ack or error) within `delivery_timeout`.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The Java client's default partitioner: a key lands on the same partition whichever
            // client (Java producers, this fallback, the republisher) wrote it.
            .set("partitioner", "murmur2_random")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            // A topic that does not exist must fail as UnknownTopic (dead-letter), not wait out
            // the delivery timeout and look like an outage (retried forever). librdkafka's
            // default (30 s) is longer than our delivery timeouts.
            .set(
                "topic.metadata.propagation.max.ms",
                (self.delivery_timeout.as_millis() / 3).max(1).to_string(),
            )
            .set("linger.ms", "5");
        config
    }

    /// The client context matching the security settings.
    pub fn context(&self) -> KafkaContext {
        self.context_reporting_to(Arc::default())
    }

    /// [`Self::context`], its client errors recorded in `errors`.
    fn context_reporting_to(&self, errors: Arc<ClientErrors>) -> KafkaContext {
        KafkaContext {
            iam: match &self.security {
                Security::MskIam { region } => Some(MskIamTokenSource::new(region.clone())),
                _ => None,
            },
            errors,
        }
    }

    /// A producer built from [`Self::producer_config`] and [`Self::context`].
    pub fn producer(&self) -> Result<FutureProducer<KafkaContext>, KafkaError> {
        self.producer_config().create_with_context(self.context())
    }

    /// A [`RenewingProducer`] over [`Self::producer_config`] with `overrides` applied.
    pub fn renewing_producer(
        &self,
        overrides: &[(&str, &str)],
    ) -> Result<RenewingProducer, KafkaError> {
        let mut config = self.producer_config();
        for (name, value) in overrides {
            config.set(*name, *value);
        }
        let settings = self.clone();
        let errors = Arc::new(ClientErrors::default());
        let reported = errors.clone();
        let mut producer = RenewingProducer::new(Box::new(move || {
            config.create_with_context(settings.context_reporting_to(reported.clone()))
        }))?;
        producer.errors = errors;
        Ok(producer)
    }
}

/// Builds a producer; called again whenever the current one has to be replaced.
pub type ProducerFactory =
    Box<dyn Fn() -> Result<FutureProducer<KafkaContext>, KafkaError> + Send + Sync>;

/// An idempotent producer that replaces itself when librdkafka enters its fatal state.
///
/// With `enable.idempotence=true`, librdkafka raises a fatal error when it can no longer keep
/// its ordering and no-duplicate guarantees (e.g. the broker lost the producer's state); from
/// then on every produce on that instance fails. A warm Lambda environment or a long-running
/// producer application would fail forever, so the first send that sees the fatal error swaps
/// in a new instance (the failing send still fails: its event is retried or diverted by the
/// caller, as for any retriable error).
pub struct RenewingProducer {
    current: std::sync::RwLock<Arc<FutureProducer<KafkaContext>>>,
    build: ProducerFactory,
    renewals: AtomicUsize,
    /// Where the producers' contexts record client errors (when built by
    /// [`KafkaSettings::renewing_producer`]).
    errors: Arc<ClientErrors>,
}

impl RenewingProducer {
    pub fn new(build: ProducerFactory) -> Result<Self, KafkaError> {
        Ok(Self {
            current: std::sync::RwLock::new(Arc::new(build()?)),
            build,
            renewals: AtomicUsize::new(0),
            errors: Arc::default(),
        })
    }

    /// The last client error librdkafka reported within `recent`, with its age.
    pub fn recent_client_error(&self, recent: Duration) -> Option<(Duration, String)> {
        self.errors.recent(recent)
    }

    /// The producer in use now.
    pub fn current(&self) -> Arc<FutureProducer<KafkaContext>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times the producer was replaced.
    pub fn renewals(&self) -> usize {
        self.renewals.load(Ordering::Relaxed)
    }

    /// Sends `record` and waits for its delivery report: `(partition, offset)` once acked.
    /// `queue_timeout` bounds the wait for room in the local queue.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<(i32, i64), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let producer = self.current();
        match producer.send(record, queue_timeout).await {
            Ok(delivery) => Ok((delivery.partition, delivery.offset)),
            Err((error, _)) => {
                if crate::classify::is_fatal(&error) {
                    self.renew(&producer, &error);
                }
                Err(error)
            }
        }
    }

    fn renew(&self, broken: &Arc<FutureProducer<KafkaContext>>, error: &KafkaError) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Concurrent sends see the same fatal error: only the first replaces the instance.
        if !Arc::ptr_eq(&current, broken) {
            return;
        }
        match (self.build)() {
            Ok(producer) => {
                *current = Arc::new(producer);
                self.renewals.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "the Kafka producer hit a fatal error; replaced it with a new instance");
            }
            Err(build_error) => {
                tracing::error!(%error, %build_error, "the Kafka producer hit a fatal error and a new one could not be built; will try again on the next send");
            }
        }
    }
}

fn is_host_port(server: &str) -> bool {
    match server.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// Client context shared by our producers and admin clients: librdkafka's logs go to `tracing`,
/// and OAUTHBEARER tokens come from MSK IAM when configured.
pub struct KafkaContext {
    iam: Option<MskIamTokenSource>,
    errors: Arc<ClientErrors>,
}

/// A client's latest error report (a failed TLS handshake, a refused connection), so a delivery
/// that only says "timed out" can say why.
#[derive(Debug, Default)]
pub struct ClientErrors(std::sync::Mutex<Option<(std::time::Instant, String)>>);

impl ClientErrors {
    fn record(&self, reason: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), reason.to_string()));
    }

    /// The last report if made within `recent`, e.g. `ssl handshake failed: … certificate
    /// verify failed`, with its age.
    pub fn recent(&self, recent: Duration) -> Option<(Duration, String)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(at, reason)| (at.elapsed(), reason.clone()))
            .filter(|(age, _)| *age <= recent)
    }
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Brokers going away is what this project exists for: a warning, not an error.
        tracing::warn!(target: "librdkafka", %error, reason, "kafka client error");
        self.errors.record(reason);
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        match &self.iam {
            Some(source) => Ok(source.token()?),
            None => Err("OAUTHBEARER requested but KAFKA_SECURITY_PROTOCOL is not SASL_SSL".into()),
        }
    }
}

/// Consumers (the operator CLI reading the dead-letter topic) authenticate the same way.
impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&'static str, &'static str)]) -> Result<KafkaSettings, ConfigError> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        KafkaSettings::from_env(&env, "test-client", Duration::from_secs(10))
    }

    #[test]
    fn bootstrap_servers_are_required() {
        let err = settings(&[]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Missing {
                var: BOOTSTRAP_SERVERS,
                ..
            }
        ));
    }

    #[test]
    fn bootstrap_entries_must_be_host_port() {
        let err = settings(&[(BOOTSTRAP_SERVERS, "b-1:9098,b-2")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                var: BOOTSTRAP_SERVERS,
                value: "b-2".into(),
                expected: "host:port entries separated by commas"
            }
        );
    }

    #[test]
    fn defaults_to_msk_iam_which_needs_a_region() {
        let err = settings(&[(BOOTSTRAP_SERVERS, "b-1:9098")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Missing {
                var: AWS_REGION,
                ..
            }
        ));

        let s = settings(&[(BOOTSTRAP_SERVERS, "b-1:9098"), (AWS_REGION, "eu-west-1")]).unwrap();
        assert_eq!(
            s.security,
            Security::MskIam {
                region: "eu-west-1".into()
            }
        );
        let config = s.producer_config();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
    }

    #[test]
    fn unknown_protocol_is_named() {
        let err = settings(&[
            (BOOTSTRAP_SERVERS, "k:9092"),
            (SECURITY_PROTOCOL, "SASL_PLAINTEXT"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("KAFKA_SECURITY_PROTOCOL=\"SASL_PLAINTEXT\""),
            "{err}"
        );
    }

    #[test]
    fn producer_is_idempotent_and_java_compatible() {
        let s = settings(&[
            (BOOTSTRAP_SERVERS, "127.0.0.1:9092"),
            (SECURITY_PROTOCOL, "plaintext"),
            (DELIVERY_TIMEOUT_MS, "2500"),
            (CLIENT_ID, "custom"),
        ])
        .unwrap();
        let config = s.producer_config();
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
        assert_eq!(config.get("message.timeout.ms"), Some("2500"));
        assert_eq!(config.get("client.id"), Some("custom"));
        assert_eq!(config.get("sasl.mechanism"), None);
    }

    #[test]
    fn tls_with_custom_ca() {
        let s = settings(&[
            (BOOTSTRAP_SERVERS, "b-1:9094"),
            (SECURITY_PROTOCOL, "SSL"),
            (SSL_CA_LOCATION, "/etc/ca.pem"),
        ])
        .unwrap();
        let config = s.client_config();
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }
}
