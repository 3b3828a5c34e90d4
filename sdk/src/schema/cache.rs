//! Compiled schemas, fetched from the registry once per version and kept for the process's life
//! (schema versions never change once available).
//!
//! Each lookup key (a version id, a schema's latest version, a schema's version with a given
//! definition) has one cell; concurrent misses of one key wait on the same registry request and
//! share its answer, a failure included (so an outage costs one request per key, not one per
//! waiter). A failure is then forgotten, so the next lookup asks again — except a version id the
//! registry does not have or whose schema does not compile: that answer will not change, and
//! remembering it keeps a stream of such events from becoming a stream of registry requests
//! (up to [`MAX_REMEMBERED_FAILURES`] of them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::compiled::{CompileError, CompiledSchema};
use super::registry::{Registry, RegistryError, SchemaName, SchemaVersion};

/// Why a schema could not be had.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

impl SchemaError {
    /// Whether asking again later may succeed (the registry was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Registry(RegistryError::Unavailable { .. }))
    }

    /// Whether the value naming the schema is at fault (a version the registry does not have,
    /// or cannot be used), as opposed to the registry or our access to it.
    pub fn is_events_fault(&self) -> bool {
        matches!(
            self,
            Self::Registry(
                RegistryError::NotFound { .. } | RegistryError::UnsupportedFormat { .. }
            ) | Self::Compile(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(Uuid),
    Latest(SchemaName),
    Definition(SchemaName, String),
}

type Answer = Result<Arc<CompiledSchema>, SchemaError>;
type Cell = Arc<OnceCell<Answer>>;

/// Permanent failures remembered at most; past this, they are asked again like any other.
pub const MAX_REMEMBERED_FAILURES: usize = 1000;

/// The cache in front of a [`Registry`]. Share one per process (it is cheap to clone an `Arc`).
pub struct SchemaCache {
    registry: Arc<dyn Registry>,
    cells: Mutex<HashMap<Key, Cell>>,
    requests: AtomicU64,
    remembered_failures: AtomicU64,
}

impl SchemaCache {
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        Self {
            registry,
            cells: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            remembered_failures: AtomicU64::new(0),
        }
    }

    /// Registry requests made so far (misses that reached the registry, failed ones included).
    pub fn registry_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The version a value's prefix names.
    pub async fn by_id(&self, id: Uuid) -> Result<Arc<CompiledSchema>, SchemaError> {
        self.get(Key::Id(id), || self.registry.version(id)).await
    }

    /// The schema's latest version when first asked; later calls return the same version
    /// (a producer publishes with the version it resolved at start-up until it restarts).
    pub async fn latest(&self, name: &SchemaName) -> Result<Arc<CompiledSchema>, SchemaError> {
        self.get(Key::Latest(name.clone()), || self.registry.latest(name))
            .await
    }

    /// The version of `name` with exactly `definition`; when it is not registered and
    /// `auto_register` is set, registers it (the registry checks compatibility).
    pub async fn by_definition(
        &self,
        name: &SchemaName,
        definition: &str,
        auto_register: bool,
    ) -> Result<Arc<CompiledSchema>, SchemaError> {
        let key = Key::Definition(name.clone(), definition.to_string());
        self.get(key, || async move {
            match self.registry.find(name, definition).await {
                Err(RegistryError::NotFound { .. }) if auto_register => {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    self.registry.register(name, definition).await
                }
                other => other,
            }
        })
        .await
    }

    async fn get<F, Fut>(&self, key: Key, fetch: F) -> Answer
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SchemaVersion, RegistryError>>,
    {
        let cell = self.cell(&key);
        let filled_here = std::sync::atomic::AtomicBool::new(false);
        let answer = cell
            .get_or_init(|| async {
                filled_here.store(true, Ordering::Relaxed);
                self.requests.fetch_add(1, Ordering::Relaxed);
                let version = fetch().await?;
                // A version found by name is also the version of its id: a consumer reading
                // this producer's events then needs no request. (A failure remembered for the
                // id, e.g. while it was still pending, gives way to what the name found.)
                let mut by_id = self.cell(&Key::Id(version.id));
                match by_id.get() {
                    Some(Ok(known)) => return Ok(known.clone()),
                    Some(Err(_)) => {
                        self.forget(&Key::Id(version.id), &by_id);
                        by_id = self.cell(&Key::Id(version.id));
                    }
                    None => {}
                }
                let compiled = Arc::new(CompiledSchema::compile(&version)?);
                let _ = by_id.set(Ok(compiled.clone()));
                Ok(compiled)
            })
            .await
            .clone();
        // The call that asked the registry decides whether a failure is remembered; callers
        // that shared its answer leave the cell as it decided.
        if let Err(error) = &answer
            && filled_here.load(Ordering::Relaxed)
        {
            let remember = matches!(key, Key::Id(_))
                && error.is_events_fault()
                && self.remembered_failures.load(Ordering::Relaxed)
                    < MAX_REMEMBERED_FAILURES as u64;
            if remember {
                self.remembered_failures.fetch_add(1, Ordering::Relaxed);
            } else {
                self.forget(&key, &cell);
            }
        }
        answer
    }

    fn cell(&self, key: &Key) -> Cell {
        self.lock().entry(key.clone()).or_default().clone()
    }

    /// Drops `key`'s cell if it is still `cell` (a later lookup may have replaced it already).
    fn forget(&self, key: &Key, cell: &Cell) {
        let mut cells = self.lock();
        if cells
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, cell))
        {
            cells.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cell>> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::registry::DataFormat;
    use futures::FutureExt;
    use futures::future::BoxFuture;
    use std::sync::atomic::AtomicBool;

    /// A registry that answers after a pause (so concurrent lookups overlap), counting calls,
    /// and can be made unreachable or refusing.
    struct Slow {
        calls: AtomicU64,
        down: AtomicBool,
        refuse_registration: bool,
    }

    fn version(id: Uuid) -> SchemaVersion {
        SchemaVersion {
            id,
            format: DataFormat::Json,
            definition: r#"{"type":"object"}"#.into(),
            number: Some(1),
        }
    }

    impl Slow {
        fn new() -> Self {
            Self {
                calls: AtomicU64::new(0),
                down: AtomicBool::new(false),
                refuse_registration: false,
            }
        }

        async fn answer(&self, id: Uuid) -> Result<SchemaVersion, RegistryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(RegistryError::Unavailable {
                    what: "x".into(),
                    reason: "connection refused".into(),
                });
            }
            if id == Uuid::from_u128(404) {
                return Err(RegistryError::NotFound {
                    what: id.to_string(),
                });
            }
            Ok(version(id))
        }
    }

    impl Registry for Slow {
        fn version(&self, id: Uuid) -> BoxFuture<'_, Result<SchemaVersion, RegistryError>> {
            self.answer(id).boxed()
        }
        fn latest<'a>(
            &'a self,
            _: &'a SchemaName,
        ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>> {
            self.answer(Uuid::from_u128(1)).boxed()
        }
        fn find<'a>(
            &'a self,
            name: &'a SchemaName,
            _: &'a str,
        ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>> {
            async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                Err(RegistryError::NotFound {
                    what: name.to_string(),
                })
            }
            .boxed()
        }
        fn register<'a>(
            &'a self,
            name: &'a SchemaName,
            _: &'a str,
        ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>> {
            async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if self.refuse_registration {
                    return Err(RegistryError::Refused {
                        what: format!("a new version of {name}"),
                        reason: "incompatible with BACKWARD".into(),
                    });
                }
                Ok(version(Uuid::from_u128(2)))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_request() {
        let registry = Arc::new(Slow::new());
        let cache = Arc::new(SchemaCache::new(registry.clone()));
        let id = Uuid::from_u128(7);
        let lookups: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.by_id(id).await.unwrap().id() })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap(), id);
        }
        assert_eq!(registry.calls.load(Ordering::SeqCst), 1);
        cache.by_id(id).await.unwrap();
        assert_eq!(registry.calls.load(Ordering::SeqCst), 1, "then cached");
    }

    #[tokio::test]
    async fn a_failed_fetch_is_retried_later_and_cached_schemas_keep_working() {
        let registry = Arc::new(Slow::new());
        let cache = SchemaCache::new(registry.clone());
        cache.by_id(Uuid::from_u128(1)).await.unwrap();
        registry.down.store(true, Ordering::SeqCst);
        let err = cache.by_id(Uuid::from_u128(2)).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(cache.by_id(Uuid::from_u128(1)).await.is_ok(), "cached");
        registry.down.store(false, Ordering::SeqCst);
        assert!(cache.by_id(Uuid::from_u128(2)).await.is_ok(), "asked again");
    }

    #[tokio::test]
    async fn concurrent_misses_during_an_outage_share_one_failed_request() {
        let registry = Arc::new(Slow::new());
        registry.down.store(true, Ordering::SeqCst);
        let cache = Arc::new(SchemaCache::new(registry.clone()));
        let lookups: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.by_id(Uuid::from_u128(9)).await })
            })
            .collect();
        for lookup in lookups {
            assert!(lookup.await.unwrap().unwrap_err().is_transient());
        }
        assert_eq!(registry.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unknown_version_id_is_asked_for_once() {
        let registry = Arc::new(Slow::new());
        let cache = SchemaCache::new(registry.clone());
        for _ in 0..3 {
            let err = cache.by_id(Uuid::from_u128(404)).await.unwrap_err();
            assert!(err.is_events_fault(), "{err}");
        }
        assert_eq!(registry.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_version_found_by_name_is_known_by_id() {
        let registry = Arc::new(Slow::new());
        let cache = SchemaCache::new(registry.clone());
        let latest = cache.latest(&SchemaName::new("r", "orders")).await.unwrap();
        cache.by_id(latest.id()).await.unwrap();
        assert_eq!(registry.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn registration_is_asked_for_only_when_enabled_and_a_refusal_is_permanent() {
        let name = SchemaName::new("r", "orders");
        let cache = SchemaCache::new(Arc::new(Slow::new()));
        let err = cache.by_definition(&name, "{}", false).await.unwrap_err();
        assert!(matches!(
            err,
            SchemaError::Registry(RegistryError::NotFound { .. })
        ));
        assert_eq!(
            cache.by_definition(&name, "{}", true).await.unwrap().id(),
            Uuid::from_u128(2)
        );

        let refusing = Slow {
            refuse_registration: true,
            ..Slow::new()
        };
        let cache = SchemaCache::new(Arc::new(refusing));
        let err = cache.by_definition(&name, "{}", true).await.unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("incompatible"), "{err}");
    }
}
