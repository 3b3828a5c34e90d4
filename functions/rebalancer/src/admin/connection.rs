//! The wire under the admin client: one connection to a broker (plaintext, or TLS with
//! SASL/OAUTHBEARER carrying an MSK IAM token), API versions negotiated once, and
//! length-prefixed request/response frames matched by correlation id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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
    },
}

const CLIENT_ID: &str = "standby-rebalancer";
/// Largest response we accept (metadata of a 100k-partition cluster fits easily).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(super) struct Connection {
    stream: Box<dyn Stream>,
    broker: String,
    correlation_id: i32,
    /// API key → (lowest, highest) version the broker speaks.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to the first reachable bootstrap server, negotiates versions, authenticates.
    pub async fn open(bootstrap: &str, transport: &Transport) -> Result<Self, AdminError> {
        let mut last_error = String::from("no servers given");
        for server in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match Self::open_one(server, transport).await {
                Ok(connection) => return Ok(connection),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(AdminError::Connect {
            servers: bootstrap.to_string(),
            reason: last_error,
        })
    }

    async fn open_one(server: &str, transport: &Transport) -> Result<Self, AdminError> {
        let io = |source| AdminError::Io {
            broker: server.to_string(),
            source,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server))
            .await
            .map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Stream> = match transport {
            Transport::Plaintext => Box::new(tcp),
            Transport::Tls { .. } => Box::new(tls(server, tcp).await.map_err(io)?),
        };
        let mut connection = Self {
            stream,
            broker: server.to_string(),
            correlation_id: 0,
            versions: HashMap::new(),
        };
        connection.negotiate().await?;
        if let Transport::Tls {
            iam_region: Some(region),
        } = transport
        {
            connection.authenticate(region).await?;
        }
        Ok(connection)
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
        let response = self.send(handshake, "SaslHandshake").await?;
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
        let response = self.send(request, "SaslAuthenticate").await?;
        if response.error_code.is_err() {
            return Err(AdminError::Authentication(
                response
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| super::describe_code(response.error_code)),
            ));
        }
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

    /// One round trip at the highest version both sides speak.
    pub async fn send<R: Request>(
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
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let length = self.stream.read_u32().await.map_err(io)? as usize;
        if length > MAX_RESPONSE_BYTES {
            return Err(AdminError::Protocol {
                api,
                reason: format!("response of {length} bytes is too large"),
            });
        }
        let mut buffer = vec![0; length];
        self.stream.read_exact(&mut buffer).await.map_err(io)?;
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

/// RFC 7628 initial client response for OAUTHBEARER: `n,,\x01auth=Bearer <token>\x01\x01`.
pub fn oauthbearer_initial_response(token: &str) -> Bytes {
    Bytes::from(format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}"))
}

async fn tls(
    server: &str,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
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
    fn oauthbearer_response_follows_rfc_7628() {
        assert_eq!(
            &oauthbearer_initial_response("abc")[..],
            b"n,,\x01auth=Bearer abc\x01\x01"
        );
    }
}
