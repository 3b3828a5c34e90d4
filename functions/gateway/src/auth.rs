//! Who is calling: a bearer JWT verified against the issuer's JWKS, in the function itself as
//! well as in API Gateway's JWT authorizer (the local path has no API Gateway, and a request
//! that reaches the function some other way must not be trusted either).
//!
//! - Algorithms are pinned (`JWT_ALGORITHMS`, RS256 by default); the token's `alg` must be one
//!   of them and, when the key states one, the key's. Symmetric algorithms are never accepted:
//!   a JWKS publishes public keys.
//! - Keys are fetched from `JWKS_URL` and kept for [`KEYS_MAX_AGE`]. A token signed with a key
//!   id not in the set makes one new fetch (the issuer rotated its keys). Fetches are attempted
//!   at most once per `JWKS_MIN_REFETCH_SECONDS` (30 s by default), failed ones included, so
//!   neither made-up key ids nor a failing issuer turn requests into a stream of fetches; keys
//!   fetched before keep verifying while the issuer cannot be reached.
//! - `exp` and `nbf` (with `JWT_LEEWAY_SECONDS` of leeway), `iss` and the audience are checked;
//!   `exp` and `iss` are required. The audience is `aud` (one of `JWT_AUDIENCE`'s), or, for a
//!   token without `aud` (Cognito's access tokens), its `client_id` — as API Gateway's JWT
//!   authorizer checks it.
//! - The caller's client id is the first of `JWT_CLIENT_ID_CLAIMS` present (`client_id` then
//!   `azp` by default: Cognito's and OAuth's client-credentials tokens), its scopes `scope`
//!   (space-separated) or `scp`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::Mutex;

use crate::event_types::Caller;

/// How long a fetched key set is used before it is fetched again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set larger than this is not a key set.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// What a token must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    /// Accepted audiences (for Cognito, the app clients' ids).
    pub audiences: Vec<String>,
    pub jwks_url: String,
    pub algorithms: Vec<Algorithm>,
    pub client_id_claims: Vec<String>,
    pub leeway: Duration,
    /// The least time between two fetches caused by unknown key ids.
    pub refetch_after: Duration,
}

/// Why a request is not authenticated.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    Missing,
    /// The token is not acceptable; the reason is safe to return to the caller.
    #[error("the token is not accepted: {0}")]
    Rejected(String),
    /// The issuer's keys could not be had: the caller is not at fault (503).
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

/// Why the key fetcher could not be built.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error("TLS for fetching the issuer's keys: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
    #[error("the HTTP client for the issuer's keys: {0}")]
    Http(#[from] reqwest::Error),
}

struct Keys {
    set: Option<JwkSet>,
    /// The last fetch that succeeded.
    fetched: Option<Instant>,
    /// The last fetch tried, whatever came of it.
    attempted: Option<Instant>,
}

/// Whether to fetch the key set now: it is missing, old, or lacks the token's key, and no fetch
/// was tried within `refetch_after`.
pub fn fetch_due(
    known_kid: bool,
    since_fetched: Option<Duration>,
    since_attempted: Option<Duration>,
    refetch_after: Duration,
) -> bool {
    let wanted = !known_kid || since_fetched.is_none_or(|age| age >= KEYS_MAX_AGE);
    wanted && since_attempted.is_none_or(|age| age >= refetch_after)
}

pub struct Authenticator {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: Mutex<Keys>,
}

impl Authenticator {
    pub fn new(settings: JwtSettings) -> Result<Self, SetupError> {
        Ok(Self {
            settings,
            http: http_client(FETCH_TIMEOUT)?,
            keys: Mutex::new(Keys {
                set: None,
                fetched: None,
                attempted: None,
            }),
        })
    }

    /// The caller a request's `Authorization` header proves, or why not.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let token = bearer_token(authorization).ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Rejected("not a JWT".into()))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(AuthError::Rejected(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Rejected("the token names no key (kid)".into()))?;
        let key = self.key(&kid, header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        // The audience is checked below: a token may carry it as `client_id` instead.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| AuthError::Rejected(rejection_reason(e.kind())))?
            .claims;
        if !audience_matches(&claims, &self.settings.audiences) {
            return Err(AuthError::Rejected(
                "the token is for another audience".into(),
            ));
        }
        caller_of(&claims, &self.settings.client_id_claims)
    }

    /// The decoding key for `kid`, fetching the key set when it is old or lacks `kid`.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let mut keys = self.keys.lock().await;
        let known = keys.set.as_ref().is_some_and(|set| set.find(kid).is_some());
        if fetch_due(
            known,
            keys.fetched.map(|at| at.elapsed()),
            keys.attempted.map(|at| at.elapsed()),
            self.settings.refetch_after,
        ) {
            keys.attempted = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    keys.set = Some(set);
                    keys.fetched = Some(Instant::now());
                }
                // Old keys still verify tokens signed with them; without any, nothing can.
                Err(error) if keys.set.is_none() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, "could not refresh the JWKS; using the keys fetched before")
                }
            }
        }
        if keys.set.is_none() {
            return Err(AuthError::KeysUnavailable(format!(
                "no key set yet; the next fetch is tried within {:?}",
                self.settings.refetch_after
            )));
        }
        let jwk = keys
            .set
            .as_ref()
            .and_then(|set| set.find(kid))
            .ok_or_else(|| {
                AuthError::Rejected("the key that signed the token is not the issuer's".into())
            })?;
        if let Some(key_alg) = jwk.common.key_algorithm
            && !same_algorithm(key_alg, alg)
        {
            return Err(AuthError::Rejected(
                "the token's algorithm is not its key's".into(),
            ));
        }
        if matches!(&jwk.common.public_key_use, Some(use_) if *use_ != PublicKeyUse::Signature) {
            return Err(AuthError::Rejected("the key is not a signing key".into()));
        }
        DecodingKey::from_jwk(jwk)
            .map_err(|_| AuthError::Rejected("the issuer's key cannot be used".into()))
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let unavailable = |e: String| AuthError::KeysUnavailable(e);
        let response = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "{} answered {}",
                self.settings.jwks_url,
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(unavailable("the key set is too large".into()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(unavailable("the key set is too large".into()));
        }
        let set: JwkSet =
            serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("not a JWKS: {e}")))?;
        tracing::info!(keys = set.keys.len(), "fetched the issuer's keys");
        Ok(set)
    }
}

/// An HTTP client whose requests time out after `timeout`, over [`tls_config`].
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, SetupError> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .use_preconfigured_tls(tls_config()?)
        .build()?)
}

/// TLS for fetching keys: the system's roots, aws-lc-rs (the crypto the rest of the tree uses),
/// given explicitly rather than installed as the process's default.
fn tls_config() -> Result<tokio_rustls::rustls::ClientConfig, SetupError> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    Ok(
        tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn same_algorithm(key: KeyAlgorithm, token: Algorithm) -> bool {
    key.to_string() == format!("{token:?}")
}

/// A short reason the caller may be told; never the token or its claims.
fn rejection_reason(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidAudience => "the token is for another audience",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidSignature => "the signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss, aud)",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
        _ => "the token cannot be verified",
    }
    .to_string()
}

/// Whether verified claims are for one of `audiences`: `aud` (a string or a list) names one,
/// or, without `aud`, `client_id` is one (Cognito's access tokens).
pub fn audience_matches(claims: &Value, audiences: &[String]) -> bool {
    let accepted = |aud: &str| audiences.iter().any(|a| a == aud);
    match claims.get("aud") {
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(accepted),
        Some(_) => false,
        None => claims
            .get("client_id")
            .and_then(Value::as_str)
            .is_some_and(accepted),
    }
}

/// The caller named by verified claims.
pub fn caller_of(claims: &Value, client_id_claims: &[String]) -> Result<Caller, AuthError> {
    let client_id = client_id_claims
        .iter()
        .find_map(|claim| claims.get(claim).and_then(Value::as_str))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            AuthError::Rejected(format!(
                "the token names no client ({})",
                client_id_claims.join(", ")
            ))
        })?;
    let mut scopes = BTreeSet::new();
    for claim in ["scope", "scp"] {
        match claims.get(claim) {
            Some(Value::String(text)) => {
                scopes.extend(text.split_whitespace().map(str::to_string));
            }
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
            }
            _ => {}
        }
    }
    Ok(Caller {
        client_id: client_id.to_string(),
        scopes,
    })
}

/// Algorithms accepted in `JWT_ALGORITHMS`: the asymmetric ones.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
    .into_iter()
    .find(|alg| format!("{alg:?}") == name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn the_client_is_the_first_claim_present_and_scopes_come_in_both_shapes() {
        let claims_order = ["client_id".to_string(), "azp".to_string()];
        let caller = caller_of(
            &json!({"azp": "b", "client_id": "a", "scope": "orders.write  x"}),
            &claims_order,
        )
        .unwrap();
        assert_eq!(caller.client_id, "a");
        assert_eq!(
            caller.scopes,
            BTreeSet::from(["orders.write".to_string(), "x".to_string()])
        );
        let caller = caller_of(&json!({"azp": "b", "scp": ["y"]}), &claims_order).unwrap();
        assert_eq!(caller.client_id, "b");
        assert_eq!(caller.scopes, BTreeSet::from(["y".to_string()]));
        assert!(matches!(
            caller_of(&json!({"sub": "c"}), &claims_order),
            Err(AuthError::Rejected(_))
        ));
    }

    #[test]
    fn the_audience_is_aud_or_for_cognito_access_tokens_the_client_id() {
        let ours = ["app-client-a".to_string(), "partner-events".to_string()];
        assert!(audience_matches(&json!({"aud": "partner-events"}), &ours));
        assert!(audience_matches(
            &json!({"aud": ["x", "partner-events"]}),
            &ours
        ));
        assert!(!audience_matches(&json!({"aud": "other-api"}), &ours));
        assert!(!audience_matches(&json!({"aud": ["x"]}), &ours));
        // A Cognito access token: no `aud`, the app client in `client_id`.
        assert!(audience_matches(
            &json!({"client_id": "app-client-a"}),
            &ours
        ));
        assert!(!audience_matches(
            &json!({"client_id": "app-client-b"}),
            &ours
        ));
        // With an `aud`, `client_id` does not stand in for it.
        assert!(!audience_matches(
            &json!({"aud": "other", "client_id": "app-client-a"}),
            &ours
        ));
        assert!(!audience_matches(&json!({}), &ours));
    }

    #[test]
    fn key_sets_are_fetched_when_missing_old_or_lacking_the_key_and_never_more_often() {
        let every = Duration::from_secs(30);
        let s = Duration::from_secs;
        assert!(fetch_due(false, None, None, every), "first request");
        assert!(
            !fetch_due(true, Some(s(10)), Some(s(10)), every),
            "fresh and known"
        );
        assert!(
            fetch_due(false, Some(s(40)), Some(s(40)), every),
            "rotated key"
        );
        assert!(
            !fetch_due(false, Some(s(10)), Some(s(10)), every),
            "made-up key ids, just fetched"
        );
        assert!(
            fetch_due(true, Some(KEYS_MAX_AGE), Some(KEYS_MAX_AGE), every),
            "an hour old"
        );
        // The issuer failing: the last attempt counts, not the last success.
        assert!(!fetch_due(true, Some(KEYS_MAX_AGE), Some(s(5)), every));
        assert!(
            !fetch_due(false, None, Some(s(5)), every),
            "never fetched, tried 5 s ago"
        );
    }

    #[test]
    fn only_asymmetric_algorithms_can_be_configured() {
        assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
        assert_eq!(parse_algorithm("HS256"), None);
        assert_eq!(parse_algorithm("none"), None);
        assert!(same_algorithm(KeyAlgorithm::RS256, Algorithm::RS256));
        assert!(!same_algorithm(KeyAlgorithm::RS384, Algorithm::RS256));
    }
}
