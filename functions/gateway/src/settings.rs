//! The gateway's configuration, read once at start-up (the producer fallback reads its own:
//! `KAFKA_*`, `STANDBY_TABLE_NAME`, `DEAD_LETTER_TOPIC`, `PRODUCER_ID`, …).

use std::time::Duration;

use sdk::ConfigError;
use sdk::config::{self, Env};
use shared::topics::TopicAllowList;

use crate::auth::{self, JwtSettings};
use crate::body::Limits;

pub const EVENT_TYPES_TABLE: &str = "EVENT_TYPES_TABLE";
pub const IDS_TABLE: &str = "GATEWAY_IDS_TABLE";
pub const JWT_ISSUER: &str = "JWT_ISSUER";
pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
pub const JWKS_URL: &str = "JWKS_URL";
pub const JWT_ALGORITHMS: &str = "JWT_ALGORITHMS";
pub const JWT_CLIENT_ID_CLAIMS: &str = "JWT_CLIENT_ID_CLAIMS";
pub const JWT_LEEWAY_SECONDS: &str = "JWT_LEEWAY_SECONDS";
pub const JWKS_MIN_REFETCH_SECONDS: &str = "JWKS_MIN_REFETCH_SECONDS";
pub const MAX_BODY_BYTES: &str = "GATEWAY_MAX_BODY_BYTES";
pub const MAX_EVENTS: &str = "GATEWAY_MAX_EVENTS";
pub const MAX_EVENT_BYTES: &str = "GATEWAY_MAX_EVENT_BYTES";
pub const EVENT_TYPES_CACHE_SECONDS: &str = "EVENT_TYPES_CACHE_SECONDS";
pub const ID_WINDOW_HOURS: &str = "GATEWAY_ID_WINDOW_HOURS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub event_types_table: String,
    pub ids_table: String,
    pub jwt: JwtSettings,
    pub limits: Limits,
    pub event_types_ttl: Duration,
    /// How long a caller's id keeps naming the event id it got.
    pub id_window: Duration,
    pub topics: TopicAllowList,
}

impl Settings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let issuer = config::required(env, JWT_ISSUER, "the `iss` tokens must carry")?;
        let jwks_url = config::optional(env, JWKS_URL)
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        if !fetched_safely(&jwks_url) {
            return Err(ConfigError::Invalid {
                var: JWKS_URL,
                value: jwks_url,
                expected: "an https:// URL (http:// only to 127.0.0.1 or localhost)",
            });
        }
        let algorithms = config::optional(env, JWT_ALGORITHMS).unwrap_or_else(|| "RS256".into());
        let algorithms = algorithms
            .split(',')
            .map(|name| auth::parse_algorithm(name.trim()))
            .collect::<Option<Vec<_>>>()
            .filter(|list| !list.is_empty())
            .ok_or(ConfigError::Invalid {
                var: JWT_ALGORITHMS,
                value: algorithms.clone(),
                expected: "comma-separated asymmetric JWS algorithms \
                           (RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA)",
            })?;
        let audiences = config::required(
            env,
            JWT_AUDIENCE,
            "the audiences tokens may carry, comma-separated",
        )?;
        let audiences: Vec<String> = audiences
            .split(',')
            .map(|audience| audience.trim().to_string())
            .filter(|audience| !audience.is_empty())
            .collect();
        if audiences.is_empty() {
            return Err(ConfigError::Invalid {
                var: JWT_AUDIENCE,
                value: String::new(),
                expected: "at least one audience",
            });
        }
        let client_id_claims = config::optional(env, JWT_CLIENT_ID_CLAIMS)
            .unwrap_or_else(|| "client_id,azp".into())
            .split(',')
            .map(|claim| claim.trim().to_string())
            .filter(|claim| !claim.is_empty())
            .collect();
        let defaults = Limits::default();
        let positive = "a positive whole number";
        let limit = |var, default: usize| match config::parsed(env, var, default, positive)? {
            0 => Err(ConfigError::Invalid {
                var,
                value: "0".into(),
                expected: positive,
            }),
            value => Ok(value),
        };
        Ok(Self {
            event_types_table: config::required(
                env,
                EVENT_TYPES_TABLE,
                "the table of event types",
            )?,
            ids_table: config::required(env, IDS_TABLE, "the table of callers' event ids")?,
            jwt: JwtSettings {
                audiences,
                issuer,
                jwks_url,
                algorithms,
                client_id_claims,
                leeway: Duration::from_secs(config::parsed(
                    env,
                    JWT_LEEWAY_SECONDS,
                    30,
                    "whole seconds",
                )?),
                refetch_after: config::seconds(
                    env,
                    JWKS_MIN_REFETCH_SECONDS,
                    Duration::from_secs(30),
                )?,
            },
            limits: Limits {
                max_body_bytes: limit(MAX_BODY_BYTES, defaults.max_body_bytes)?,
                max_events: limit(MAX_EVENTS, defaults.max_events)?,
                max_event_bytes: limit(MAX_EVENT_BYTES, defaults.max_event_bytes)?,
            },
            event_types_ttl: config::seconds(
                env,
                EVENT_TYPES_CACHE_SECONDS,
                Duration::from_secs(30),
            )?,
            id_window: Duration::from_secs(limit(ID_WINDOW_HOURS, 24)? as u64 * 3600),
            topics: TopicAllowList::from_env(env)?,
        })
    }
}

/// Keys decide who may publish: they are fetched over TLS, except from this machine (tests).
fn fetched_safely(url: &str) -> bool {
    url.starts_with("https://")
        || [
            "http://127.0.0.1:",
            "http://127.0.0.1/",
            "http://localhost:",
            "http://localhost/",
        ]
        .iter()
        .any(|local| url.starts_with(local))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (EVENT_TYPES_TABLE, "event-types"),
            (IDS_TABLE, "gateway-ids"),
            (JWT_ISSUER, "https://issuer.example/"),
            (JWT_AUDIENCE, "events"),
            ("EVENT_TOPICS", "orders,payments.*"),
        ])
    }

    #[test]
    fn defaults() {
        let settings = Settings::from_env(&env()).unwrap();
        assert_eq!(
            settings.jwt.jwks_url,
            "https://issuer.example/.well-known/jwks.json"
        );
        assert_eq!(
            settings.jwt.algorithms,
            vec![jsonwebtoken::Algorithm::RS256]
        );
        assert_eq!(settings.jwt.client_id_claims, ["client_id", "azp"]);
        assert_eq!(settings.limits, Limits::default());
        assert_eq!(settings.id_window, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            (JWT_ALGORITHMS, "HS256"),
            (JWT_ALGORITHMS, "RS256,none"),
            (MAX_EVENTS, "0"),
            (JWKS_URL, "http://issuer.example/keys"),
            (JWKS_URL, "http://127.0.0.1.evil.example/keys"),
            (MAX_BODY_BYTES, "lots"),
            (ID_WINDOW_HOURS, "0"),
        ] {
            let mut env = env();
            env.insert(var, value);
            let error = Settings::from_env(&env).unwrap_err().to_string();
            assert!(error.contains(var), "{var}={value}: {error}");
        }
        let mut env = env();
        env.remove(JWT_AUDIENCE);
        assert!(
            Settings::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains(JWT_AUDIENCE)
        );
    }
}
