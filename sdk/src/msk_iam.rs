//! MSK IAM authentication tokens for SASL/OAUTHBEARER.
//!
//! An MSK IAM token is a SigV4-presigned `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect`
//! (service `kafka-cluster`, 15 minutes), with a `User-Agent` parameter appended, encoded as
//! unpadded base64url. We sign it with `aws-sigv4` directly instead of the community
//! `aws-msk-iam-sasl-signer` crate, which pulls `aws-sdk-sts`, `chrono` and `thiserror` 1 into
//! every Lambda binary for the same few lines.
//!
//! librdkafka asks for a token from its own thread through a synchronous callback; credentials
//! are loaded asynchronously, so [`MskIamTokenSource::token`] does that on a short-lived thread
//! with its own runtime and gives up after [`TOKEN_TIMEOUT`] instead of stalling the client.

use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rdkafka::client::OAuthToken;

/// How long a token is valid; librdkafka refreshes it before it expires.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// Longest wait for credentials and signing before librdkafka is told to retry.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

const SIGNING_NAME: &str = "kafka-cluster";
const PRINCIPAL: &str = "msk-iam";

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded, as SigV4
/// expects in query strings.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum MskIamError {
    #[error("no AWS credentials for the MSK IAM token: {0}")]
    Credentials(String),
    #[error("signing the MSK IAM token failed: {0}")]
    Signing(String),
    #[error("no MSK IAM token within {TOKEN_TIMEOUT:?}")]
    Timeout,
}

/// Produces tokens for one region from the default AWS credential chain (in Lambda: the
/// function role's variables).
#[derive(Debug, Clone)]
pub struct MskIamTokenSource {
    region: String,
}

impl MskIamTokenSource {
    pub fn new(region: String) -> Self {
        Self { region }
    }

    /// A fresh token; blocks the calling (librdkafka) thread for at most [`TOKEN_TIMEOUT`].
    pub fn token(&self) -> Result<OAuthToken, MskIamError> {
        let region = self.region.clone();
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("msk-iam-token".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| MskIamError::Credentials(e.to_string()))
                    .and_then(|runtime| {
                        let credentials = runtime.block_on(load_credentials(&region))?;
                        signed_token(&region, &credentials, SystemTime::now())
                    });
                // The receiver is gone only if it timed out; nobody is left to tell.
                let _ = sender.send(result);
            })
            .map_err(|e| MskIamError::Credentials(e.to_string()))?;
        receiver
            .recv_timeout(TOKEN_TIMEOUT)
            .map_err(|_| MskIamError::Timeout)?
    }
}

async fn load_credentials(region: &str) -> Result<Credentials, MskIamError> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    let provider = config
        .credentials_provider()
        .ok_or_else(|| MskIamError::Credentials("no credentials provider configured".into()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| MskIamError::Credentials(e.to_string()))
}

/// The token for `region` signed with `credentials` at `now`.
pub fn signed_token(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<OAuthToken, MskIamError> {
    let mut url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| MskIamError::Signing(e.to_string()))?;
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| MskIamError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params.into())
        .map_err(|e| MskIamError::Signing(e.to_string()))?
        .into_parts();
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.extend(utf8_percent_encode(value, QUERY_VALUE));
    }
    url.push_str("&User-Agent=");
    url.extend(utf8_percent_encode(
        concat!("standby-events-shared/", env!("CARGO_PKG_VERSION")),
        QUERY_VALUE,
    ));
    let signed_at_ms = wire::clock::epoch_ms(now) as i64;
    Ok(OAuthToken {
        token: BASE64_URL_SAFE_NO_PAD.encode(url),
        principal_name: PRINCIPAL.into(),
        lifetime_ms: signed_at_ms + TOKEN_LIFETIME.as_millis() as i64,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn token_is_a_presigned_connect_url() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session/token".into()),
            None,
            "test",
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = signed_token("eu-west-1", &credentials, now).unwrap();

        let url = String::from_utf8(BASE64_URL_SAFE_NO_PAD.decode(&token.token).unwrap()).unwrap();
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            )
        );
        for expected in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=900",
            "X-Amz-Security-Token=session%2Ftoken",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=",
            "User-Agent=standby-events-shared%2F",
        ] {
            assert!(url.contains(expected), "{expected} missing from {url}");
        }
        assert_eq!(token.lifetime_ms, 1_700_000_900_000);
        assert!(
            !token.token.contains('=') && !token.token.contains('+') && !token.token.contains('/')
        );
    }

    #[test]
    fn same_inputs_same_signature() {
        let credentials = Credentials::new("AKID", "secret", None, None, "test");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = signed_token("us-east-1", &credentials, now).unwrap();
        let b = signed_token("us-east-1", &credentials, now).unwrap();
        assert_eq!(a.token, b.token);
        let later = signed_token("us-east-1", &credentials, now + Duration::from_secs(1)).unwrap();
        assert_ne!(a.token, later.token);
    }
}
