//! A token issuer for tests: RSA keys made by `openssl` (as a real identity provider's are
//! kept elsewhere), its JWKS served over real HTTP on 127.0.0.1, and tokens signed with them.
//! Keys can be rotated, and the JWKS fetches are counted.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One signing key and its key id.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// A new 2048-bit RSA key (RS256), written by `openssl genpkey` into `dir`.
    pub fn rsa(dir: &Path, kid: &str) -> Result<Self> {
        let path = dir.join(format!("{kid}.pem"));
        let status = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .context("running openssl")?;
        if !status.success() {
            bail!("openssl genpkey failed");
        }
        let key = EncodingKey::from_rsa_pem(&std::fs::read(&path)?)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            kid: kid.to_string(),
            key,
            jwk,
        })
    }

    /// `claims` signed with this key (RS256, this key's id).
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }
}

/// Seconds since the epoch, for `exp`, `nbf` and `iat`.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// An issuer: its URL (also its `iss`), the keys its JWKS publishes, and the key it signs with.
pub struct Issuer {
    pub url: String,
    pub audience: String,
    published: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    current: Mutex<SigningKey>,
    dir: tempfile::TempDir,
}

impl Issuer {
    /// Serves `{url}/.well-known/jwks.json` with one new key.
    pub async fn start(audience: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = SigningKey::rsa(dir.path(), "key-1")?;
        let published = Arc::new(Mutex::new(vec![key.jwk.clone()]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (keys, count) = (published.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (keys, count) = (keys.clone(), count.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let answer = if request.uri().path() == "/.well-known/jwks.json" {
                            count.fetch_add(1, Ordering::SeqCst);
                            let set = JwkSet {
                                keys: keys.lock().unwrap().clone(),
                            };
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(
                                    serde_json::to_vec(&set).unwrap_or_default(),
                                )))
                        } else {
                            Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new()))
                        };
                        async move { answer }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url,
            audience: audience.to_string(),
            published,
            fetches,
            current: Mutex::new(key),
            dir,
        })
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A new key, published next to the old ones and used to sign from now on.
    pub fn rotate(&self, kid: &str) -> Result<()> {
        let key = SigningKey::rsa(self.dir.path(), kid)?;
        self.published.lock().unwrap().push(key.jwk.clone());
        *self.current.lock().unwrap() = key;
        Ok(())
    }

    /// A key that is not published (a forger's), under `kid`.
    pub fn unpublished_key(&self, kid: &str) -> Result<SigningKey> {
        SigningKey::rsa(self.dir.path(), &format!("{kid}-forged")).map(|mut key| {
            key.kid = kid.to_string();
            key
        })
    }

    /// The key signing now.
    pub fn key(&self) -> SigningKey {
        self.current.lock().unwrap().clone()
    }

    /// Claims of a valid client-credentials token for `client_id`, valid for `lifetime`.
    pub fn claims(&self, client_id: &str, scopes: &[&str], lifetime: Duration) -> Value {
        let now = now_secs();
        json!({
            "iss": self.url,
            "aud": self.audience,
            "client_id": client_id,
            "scope": scopes.join(" "),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime.as_secs(),
        })
    }

    /// A valid token for `client_id` with `scopes`, signed with the current key.
    pub fn token(&self, client_id: &str, scopes: &[&str]) -> Result<String> {
        self.key()
            .sign(&self.claims(client_id, scopes, Duration::from_secs(600)))
    }
}
