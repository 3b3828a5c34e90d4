//! MSK IAM authentication tokens for SASL/OAUTHBEARER.
//!
//! An MSK IAM token is a SigV4-presigned `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect`
//! (service `kafka-cluster`, 15 minutes), with a `User-Agent` parameter appended, encoded as
//! unpadded base64url. We sign it with `aws-sigv4` directly instead of the community
//! `aws-msk-iam-sasl-signer` crate, which pulls `aws-sdk-sts`, `chrono` and `thiserror` 1 into
//! every Lambda binary for the same few lines.
//!
//! librdkafka asks for a token through a synchronous callback; credentials are loaded
//! asynchronously. The source keeps one credentials provider (the default chain, built once) and
//! one small runtime to drive it, and [`MskIamTokenSource::token`] blocks on that runtime from a
//! short-lived thread of its own, giving up after [`TOKEN_TIMEOUT`] instead of stalling the
//! client. Its own thread because the callback can run on a thread that is already inside a
//! Tokio runtime (an rdkafka poll from async code), where blocking on another runtime panics.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
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
/// function role's variables). Clones share the provider and its runtime.
#[derive(Debug, Clone)]
pub struct MskIamTokenSource {
    region: String,
    signer: Arc<Mutex<Option<Arc<Signer>>>>,
}

/// The credentials provider and the runtime its futures run on, built on first use.
#[derive(Debug)]
struct Signer {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    credentials: SharedCredentialsProvider,
}

impl Drop for Signer {
    // The last owner can be async code (a producer replaced after a fatal error), where Tokio
    // refuses a runtime's blocking shutdown; the background shutdown never blocks.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Signer {
    fn new(region: &str) -> Result<Self, MskIamError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MskIamError::Credentials(e.to_string()))?;
        let config = runtime.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_string()))
                .load(),
        );
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| MskIamError::Credentials("no credentials provider configured".into()))?;
        Ok(Self {
            runtime: Some(runtime),
            credentials,
        })
    }
}

impl MskIamTokenSource {
    pub fn new(region: String) -> Self {
        Self {
            region,
            signer: Arc::new(Mutex::new(None)),
        }
    }

    /// A fresh token; blocks the calling (librdkafka) thread for at most [`TOKEN_TIMEOUT`].
    pub fn token(&self) -> Result<OAuthToken, MskIamError> {
        let (region, shared) = (self.region.clone(), self.signer.clone());
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("msk-iam-token".into())
            .spawn(move || {
                let result = signer(&shared, &region).and_then(|signer| {
                    let runtime = signer.runtime.as_ref().expect("set until dropped");
                    let credentials = runtime
                        .block_on(signer.credentials.provide_credentials())
                        .map_err(|e| MskIamError::Credentials(e.to_string()))?;
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

/// The shared signer, built by the first caller; a failed build is tried again next time.
fn signer(shared: &Mutex<Option<Arc<Signer>>>, region: &str) -> Result<Arc<Signer>, MskIamError> {
    let mut slot = shared.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(signer) = slot.as_ref() {
        return Ok(signer.clone());
    }
    let signer = Arc::new(Signer::new(region)?);
    *slot = Some(signer.clone());
    Ok(signer)
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

    #[tokio::test]
    async fn tokens_are_asked_for_and_the_source_dropped_inside_async_code() {
        // The default chain reads these first. No other test in this binary reads credentials
        // from the environment, so setting them here races with nothing.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDFROMENV");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
        }
        let source = MskIamTokenSource::new("eu-west-1".into());
        // On a runtime thread, as librdkafka's callback is when async code polls the client.
        for _ in 0..2 {
            let token = source
                .token()
                .expect("a token from environment credentials");
            let url =
                String::from_utf8(BASE64_URL_SAFE_NO_PAD.decode(token.token).unwrap()).unwrap();
            assert!(url.contains("X-Amz-Credential=AKIDFROMENV%2F"), "{url}");
        }
        // The last owner of the signer's runtime, inside a runtime: must not panic.
        drop(source);
    }
}
