//! The wire under the admin client: one connection to a broker (plaintext, or TLS with
//! SASL/OAUTHBEARER carrying an MSK IAM token), API versions negotiated once, and
//! length-prefixed request/response frames matched by correlation id.
//!
//! Bounded everywhere a peer could hold us: opening a connection (TCP, TLS, versions, the token
//! and SASL together) takes at most [`OPEN_TIMEOUT`] and every later round trip at most
//! [`REQUEST_TIMEOUT`]; a response's memory is allocated as its bytes arrive, never from the
//! length the peer announces, and a response larger than [`MAX_RESPONSE_BYTES`] is refused.
//! An authenticated session is renewed (a new connection with a fresh token) before the broker's
//! session lifetime ends, or before the token's own 15 minutes when the broker states no
//! lifetime, so a run longer than one token keeps working. A connection that failed a round
//! trip is not used again (a late answer would be read as the next request's): the next request
//! opens a new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{AdminError, check};

/// How to reach the brokers.
#[derive(Debug, Clone)]
pub enum Transport {
    Plaintext,
    /// TLS; with `iam_region`, SASL/OAUTHBEARER with an MSK IAM token for that region.
    Tls {
        iam_region: Option<String>,
        /// PEM file of the certificate authorities to trust instead of the system's
        /// (`KAFKA_SSL_CA_LOCATION`, as librdkafka's `ssl.ca.location`).
        ca_location: Option<PathBuf>,
    },
}

const CLIENT_ID: &str = "standby-rebalancer";
/// Largest response accepted: metadata of a 100,000-partition cluster is a few megabytes, and
/// the function has 512 MB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Opening a connection, everything included: TCP connect, TLS handshake, API versions, the
/// IAM token and the SASL exchange.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// One round trip: the controller timeout requests carry (30 s) and some slack. The template's
/// `REBALANCE_MARGIN_MS` covers two requests that each open a connection first (see there), so
/// a hung broker near the deadline still leaves time to report.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// Renew a session when this much of its lifetime is left (MSK IAM sessions end with the
/// token, 15 minutes after it was made).
const RENEW_BEFORE_END: Duration = Duration::from_secs(60);
/// How long an MSK IAM token is valid; a session is renewed within it even when the broker
/// states no lifetime (KIP-368's zero), so a broker that starts enforcing one cannot cut us off.
const IAM_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The connection's bounds; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub open: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            open: OPEN_TIMEOUT,
            request: REQUEST_TIMEOUT,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(super) struct Connection {
    stream: Box<dyn Stream>,
    broker: String,
    correlation_id: i32,
    /// API key → (lowest, highest) version the broker speaks.
    versions: HashMap<i16, (i16, i16)>,
    /// Where to connect again when the session must be renewed.
    bootstrap: String,
    transport: Transport,
    /// When the authenticated session ends: the broker's `session_lifetime_ms`, or the token's
    /// lifetime when the broker states none; `None` for unauthenticated connections.
    session_ends: Option<Instant>,
    /// A round trip failed: the stream may still deliver its answer, so it is not used again.
    broken: bool,
    timeouts: Timeouts,
}

/// Whether a session ending at `ends` must be renewed before a request at `now`.
pub fn renewal_due(ends: Option<Instant>, now: Instant) -> bool {
    ends.is_some_and(|ends| now + RENEW_BEFORE_END >= ends)
}

impl Connection {
    /// Connects to the first reachable bootstrap server, negotiates versions, authenticates.
    pub async fn open(bootstrap: &str, transport: &Transport) -> Result<Self, AdminError> {
        Self::open_with(bootstrap, transport, Timeouts::default()).await
    }

    pub(super) async fn open_with(
        bootstrap: &str,
        transport: &Transport,
        timeouts: Timeouts,
    ) -> Result<Self, AdminError> {
        let mut last_error = String::from("no servers given");
        for server in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let opened =
                tokio::time::timeout(timeouts.open, Self::open_one(server, transport, timeouts));
            match opened.await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => {
                    last_error = timed_out("opening the connection", timeouts.open).to_string()
                }
            }
        }
        Err(AdminError::Connect {
            servers: bootstrap.to_string(),
            reason: last_error,
        })
    }

    /// One server, unbounded: [`Self::open_with`] bounds it as a whole.
    async fn open_one(
        server: &str,
        transport: &Transport,
        timeouts: Timeouts,
    ) -> Result<Self, AdminError> {
        let io = |source| AdminError::Io {
            broker: server.to_string(),
            source,
        };
        let tcp = TcpStream::connect(server).await.map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Stream> = match transport {
            Transport::Plaintext => Box::new(tcp),
            Transport::Tls { ca_location, .. } => {
                Box::new(tls(server, tcp, ca_location.as_deref()).await.map_err(io)?)
            }
        };
        let mut connection = Self {
            stream,
            broker: server.to_string(),
            correlation_id: 0,
            versions: HashMap::new(),
            bootstrap: server.to_string(),
            transport: transport.clone(),
            session_ends: None,
            broken: false,
            timeouts,
        };
        connection.negotiate().await?;
        if let Transport::Tls {
            iam_region: Some(region),
            ..
        } = transport
        {
            connection.authenticate(region).await?;
        }
        Ok(connection)
    }

    /// Replaces this connection by a new one (fresh token) when its session ends soon or a
    /// round trip on it failed.
    async fn renew_if_due(&mut self) -> Result<(), AdminError> {
        let why = if self.broken {
            "a round trip on it failed"
        } else if renewal_due(self.session_ends, Instant::now()) {
            "its authenticated session ends soon"
        } else {
            return Ok(());
        };
        tracing::info!(broker = self.broker, why, "opening a new connection");
        *self = Self::open_with(
            &self.bootstrap.clone(),
            &self.transport.clone(),
            self.timeouts,
        )
        .await?;
        Ok(())
    }

    async fn negotiate(&mut self) -> Result<(), AdminError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // Version 3 is the first with the software name; every broker this targets speaks it.
        let response = self.exchange(request, 3, "ApiVersions").await?;
        check("ApiVersions", response.error_code, None)?;
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// SASL/OAUTHBEARER with an MSK IAM token (RFC 7628 initial client response).
    async fn authenticate(&mut self, region: &str) -> Result<(), AdminError> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str("OAUTHBEARER"));
        let response = self.send_now(handshake, "SaslHandshake").await?;
        if response.error_code.is_err() {
            return Err(AdminError::Authentication(format!(
                "OAUTHBEARER not enabled ({}); brokers offer {:?}",
                super::describe_code(response.error_code),
                response.mechanisms
            )));
        }
        let source = sdk::msk_iam::MskIamTokenSource::new(region.to_string());
        let token = tokio::task::spawn_blocking(move || source.token())
            .await
            .map_err(|e| AdminError::Authentication(e.to_string()))?
            .map_err(|e| AdminError::Authentication(e.to_string()))?;
        let request = SaslAuthenticateRequest::default()
            .with_auth_bytes(oauthbearer_initial_response(&token.token));
        let response = self.send_now(request, "SaslAuthenticate").await?;
        if response.error_code.is_err() {
            return Err(AdminError::Authentication(
                response
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| super::describe_code(response.error_code)),
            ));
        }
        self.session_ends = Some(Instant::now() + session_lifetime(response.session_lifetime_ms));
        Ok(())
    }

    fn version<R: Request>(&self, api: &'static str) -> Result<i16, AdminError> {
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().unwrap_or((0, -1));
        let version = broker_max.min(R::VERSIONS.max);
        if version < broker_min.max(R::VERSIONS.min) {
            return Err(AdminError::Unsupported {
                api,
                min: R::VERSIONS.min,
                max: R::VERSIONS.max,
            });
        }
        Ok(version)
    }

    /// One round trip at the highest version both sides speak, on a session renewed first if
    /// it would end soon.
    pub async fn send<R: Request>(
        &mut self,
        request: R,
        api: &'static str,
    ) -> Result<R::Response, AdminError> {
        self.renew_if_due().await?;
        self.send_now(request, api).await
    }

    /// One round trip on this connection as it is (the handshakes that open a session).
    async fn send_now<R: Request>(
        &mut self,
        request: R,
        api: &'static str,
    ) -> Result<R::Response, AdminError> {
        let version = self.version::<R>(api)?;
        self.exchange(request, version, api).await
    }

    /// One request/response round trip at `version`.
    async fn exchange<R: Request>(
        &mut self,
        request: R,
        version: i16,
        api: &'static str,
    ) -> Result<R::Response, AdminError> {
        let protocol = |e: anyhow::Error| AdminError::Protocol {
            api,
            reason: e.to_string(),
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(protocol)?;
        request.encode(&mut body, version).map_err(protocol)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);

        let broker = self.broker.clone();
        let io = |source| AdminError::Io {
            broker: broker.clone(),
            source,
        };
        let round_trip = async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await?;
            read_frame(&mut self.stream).await
        };
        let limit = self.timeouts.request;
        let buffer = match within(limit, "response", round_trip).await {
            Ok(buffer) => buffer,
            Err(error) => {
                self.broken = true;
                return Err(io(error));
            }
        };
        let mut buffer = Bytes::from(buffer);
        let response_header =
            ResponseHeader::decode(&mut buffer, R::Response::header_version(version))
                .map_err(protocol)?;
        if response_header.correlation_id != self.correlation_id {
            return Err(AdminError::Protocol {
                api,
                reason: format!(
                    "correlation id {} answered {}",
                    self.correlation_id, response_header.correlation_id
                ),
            });
        }
        let response = R::Response::decode(&mut buffer, version).map_err(protocol)?;
        if buffer.has_remaining() {
            tracing::debug!(
                api,
                left = buffer.remaining(),
                "response had trailing bytes"
            );
        }
        Ok(response)
    }
}

/// How long a session lasts given the broker's `session_lifetime_ms`: zero means the broker
/// does not end sessions (KIP-368), and then the token's lifetime is used anyway.
fn session_lifetime(broker_ms: i64) -> Duration {
    u64::try_from(broker_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map_or(IAM_TOKEN_LIFETIME, Duration::from_millis)
        .min(IAM_TOKEN_LIFETIME)
}

/// `work`, or a `TimedOut` error naming `what` after `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(timed_out(what, limit)))
}

fn timed_out(what: &str, limit: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} took longer than {limit:?}"),
    )
}

/// One length-prefixed frame. Memory grows with the bytes that arrive, not with the length
/// the peer claims; a claim above [`MAX_RESPONSE_BYTES`] is refused before reading on.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let length = stream.read_u32().await? as usize;
    if length > MAX_RESPONSE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a response of {length} bytes is over the {MAX_RESPONSE_BYTES}-byte limit"),
        ));
    }
    let mut buffer = Vec::with_capacity(length.min(64 * 1024));
    stream.take(length as u64).read_to_end(&mut buffer).await?;
    if buffer.len() < length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the connection closed after {} of {length} response bytes",
                buffer.len()
            ),
        ));
    }
    Ok(buffer)
}

/// RFC 7628 initial client response for OAUTHBEARER: `n,,\x01auth=Bearer <token>\x01\x01`.
pub fn oauthbearer_initial_response(token: &str) -> Bytes {
    Bytes::from(format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}"))
}

/// The certificate authorities to trust: those in `ca_location` only, or the system's.
fn trust_roots(ca_location: Option<&Path>) -> std::io::Result<tokio_rustls::rustls::RootCertStore> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let Some(path) = ca_location else {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        return Ok(roots);
    };
    let invalid = |reason: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("KAFKA_SSL_CA_LOCATION {}: {reason}", path.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(roots)
}

async fn tls(
    server: &str,
    tcp: TcpStream,
    ca_location: Option<&Path>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let roots = trust_roots(ca_location)?;
    let config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = server
        .rsplit_once(':')
        .map_or(server, |(host, _)| host)
        .to_string();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_renewed_a_minute_before_it_ends() {
        let now = Instant::now();
        assert!(
            !renewal_due(None, now),
            "sessions without a lifetime never end"
        );
        assert!(!renewal_due(Some(now + Duration::from_secs(600)), now));
        assert!(renewal_due(Some(now + Duration::from_secs(59)), now));
        assert!(renewal_due(Some(now), now + Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn a_frame_allocates_what_arrives_and_refuses_oversized_claims() {
        let mut ok: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c'];
        assert_eq!(read_frame(&mut ok).await.unwrap(), b"abc");
        // A peer claiming 2 GiB and sending 3 bytes: refused without allocating the claim.
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, b'a', b'b', b'c'];
        let error = read_frame(&mut huge).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
        // Within the limit but cut short: an error, not a short frame.
        let mut short: &[u8] = &[0, 0, 0x10, 0, b'a'];
        let error = read_frame(&mut short).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error() {
        let file = std::env::temp_dir().join(format!("no-ca-{}.pem", std::process::id()));
        std::fs::write(&file, "not a certificate").unwrap();
        let error = trust_roots(Some(&file)).unwrap_err().to_string();
        assert!(
            error.contains("KAFKA_SSL_CA_LOCATION") && error.contains("no PEM"),
            "{error}"
        );
        let missing = trust_roots(Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        std::fs::remove_file(file).unwrap();
    }

    /// What the fake broker does with each connection's requests.
    #[derive(Clone, Copy)]
    enum Broker {
        /// Accepts connections and never answers.
        Silent,
        /// Answers every request.
        Answers,
        /// Answers the first two requests of each connection, then closes it.
        AnswersTwiceThenCloses,
    }

    /// A local listener speaking just enough Kafka for these tests (ApiVersions v3); returns
    /// its address and a count of the connections it accepted.
    async fn fake_broker(behaviour: Broker) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use kafka_protocol::messages::ApiVersionsResponse;
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let limit = match behaviour {
                        Broker::Silent => 0,
                        Broker::Answers => usize::MAX,
                        Broker::AnswersTwiceThenCloses => 2,
                    };
                    let mut answered = 0;
                    while let Ok(frame) = read_frame(&mut socket).await {
                        if answered == limit {
                            if limit == 0 {
                                // Hold the connection open, silently.
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            return;
                        }
                        let mut frame = Bytes::from(frame);
                        let header = RequestHeader::decode(
                            &mut frame,
                            ApiVersionsRequest::header_version(3),
                        )
                        .unwrap();
                        let mut body = BytesMut::new();
                        ResponseHeader::default()
                            .with_correlation_id(header.correlation_id)
                            .encode(&mut body, ApiVersionsResponse::header_version(3))
                            .unwrap();
                        ApiVersionsResponse::default()
                            .with_api_keys(vec![
                                ApiVersion::default()
                                    .with_api_key(ApiVersionsRequest::KEY)
                                    .with_max_version(3),
                            ])
                            .encode(&mut body, 3)
                            .unwrap();
                        let mut out = BytesMut::new();
                        out.put_u32(body.len() as u32);
                        out.extend_from_slice(&body);
                        if socket.write_all(&out).await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                });
            }
        });
        (address, accepted)
    }

    fn short() -> Timeouts {
        Timeouts {
            open: Duration::from_millis(300),
            request: Duration::from_millis(200),
        }
    }

    fn accepted(count: &std::sync::atomic::AtomicUsize) -> usize {
        count.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_broker_that_never_answers_fails_the_open_within_its_bound() {
        let (address, _) = fake_broker(Broker::Silent).await;
        let started = Instant::now();
        let error = Connection::open_with(&address, &Transport::Plaintext, short())
            .await
            .err()
            .expect("a silent broker cannot be connected to");
        assert!(
            matches!(&error, AdminError::Connect { reason, .. } if reason.contains("took longer than")),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    }

    #[tokio::test]
    async fn a_connection_whose_round_trip_failed_is_replaced_before_the_next_request() {
        let (address, connections) = fake_broker(Broker::AnswersTwiceThenCloses).await;
        let mut connection = Connection::open_with(&address, &Transport::Plaintext, short())
            .await
            .unwrap();
        // The first connection answered the version negotiation and this request…
        connection
            .send(ApiVersionsRequest::default(), "ApiVersions")
            .await
            .unwrap();
        // …and closes instead of answering this one.
        let error = connection
            .send(ApiVersionsRequest::default(), "ApiVersions")
            .await
            .unwrap_err();
        assert!(matches!(error, AdminError::Io { .. }), "{error}");
        assert_eq!(accepted(&connections), 1);
        // Without retiring the broken stream this would write into the closed one.
        connection
            .send(ApiVersionsRequest::default(), "ApiVersions")
            .await
            .expect("the next request goes over a new connection");
        assert_eq!(accepted(&connections), 2);
    }

    #[tokio::test]
    async fn a_session_about_to_end_is_renewed_on_a_new_connection() {
        let (address, connections) = fake_broker(Broker::Answers).await;
        let mut connection = Connection::open_with(&address, &Transport::Plaintext, short())
            .await
            .unwrap();
        connection
            .send(ApiVersionsRequest::default(), "ApiVersions")
            .await
            .unwrap();
        assert_eq!(accepted(&connections), 1, "a live session is kept");
        connection.session_ends = Some(Instant::now() + Duration::from_secs(30));
        connection
            .send(ApiVersionsRequest::default(), "ApiVersions")
            .await
            .unwrap();
        assert_eq!(accepted(&connections), 2, "renewed on a new connection");
    }

    #[test]
    fn a_session_lasts_what_the_broker_says_and_never_longer_than_the_token() {
        assert_eq!(
            session_lifetime(0),
            IAM_TOKEN_LIFETIME,
            "KIP-368: no lifetime"
        );
        assert_eq!(session_lifetime(-1), IAM_TOKEN_LIFETIME);
        assert_eq!(session_lifetime(300_000), Duration::from_secs(300));
        assert_eq!(session_lifetime(3_600_000), IAM_TOKEN_LIFETIME);
    }

    #[test]
    fn oauthbearer_response_follows_rfc_7628() {
        assert_eq!(
            &oauthbearer_initial_response("abc")[..],
            b"n,,\x01auth=Bearer abc\x01\x01"
        );
    }
}
