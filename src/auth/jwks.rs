//! Key sets fetched from a JWKS URL.
//!
//! Fetched at start-up and every `jwks_refresh`; a token naming an unknown `kid` asks for an
//! early refresh, at most once per `jwks_cooldown` (so random `kid`s cannot hammer the identity
//! provider); a failing endpoint is retried at the same pace. The last good set is kept when a
//! fetch fails, and while no set was ever loaded every token is refused: never fail open.
//! One `RemoteJwks` exists per URL, shared across reloads, so a reload keeps the keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::jwt_schema::jwk_family;
use crate::observe::metrics;

/// Parsed keys of one JWK set.
pub struct KeySet {
    /// Keys by `kid`; a set may reuse a `kid` for keys of different types.
    pub by_kid: HashMap<String, Vec<(DecodingKey, AlgorithmFamily)>>,
    pub unnamed: Vec<(DecodingKey, AlgorithmFamily)>,
}

impl KeySet {
    /// Parse a JWK set; keys that do not parse or have an unknown type are skipped.
    pub fn parse(json: &str) -> Result<KeySet, String> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(json).map_err(|e| format!("not a JWK set: {e}"))?;
        let mut by_kid = HashMap::new();
        let mut unnamed = Vec::new();
        for jwk in &set.keys {
            let (Ok(key), Some(family)) = (DecodingKey::from_jwk(jwk), jwk_family(jwk)) else {
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => by_kid
                    .entry(kid.clone())
                    .or_insert_with(Vec::new)
                    .push((key, family)),
                None => unnamed.push((key, family)),
            }
        }
        if by_kid.is_empty() && unnamed.is_empty() {
            return Err("the JWK set has no usable keys".into());
        }
        Ok(KeySet { by_kid, unnamed })
    }
}

/// How often to fetch one URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksSchedule {
    pub refresh: Duration,
    pub cooldown: Duration,
    pub timeout: Duration,
}

pub struct RemoteJwks {
    pub url: String,
    /// The URL as logs, metric labels and `/readyz` show it: no query (it may hold a token).
    pub shown: String,
    schedule: JwksSchedule,
    keys: ArcSwapOption<KeySet>,
    /// Bumped on every successful fetch; cached verifications of older generations are void.
    generation: AtomicU64,
    last_attempt: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    refresh_wanted: AtomicBool,
    fetching: AtomicBool,
}

static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<RemoteJwks>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl RemoteJwks {
    /// The shared state for `url`, created on first use.
    pub fn for_url(url: &str, schedule: JwksSchedule) -> Arc<RemoteJwks> {
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = registry.get(url).and_then(Weak::upgrade) {
            if existing.schedule == schedule {
                return existing;
            }
        }
        let fresh = Arc::new(RemoteJwks {
            url: url.to_string(),
            shown: crate::redact::url(url),
            schedule,
            keys: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
            last_error: Mutex::new(None),
            refresh_wanted: AtomicBool::new(false),
            fetching: AtomicBool::new(false),
        });
        registry.insert(url.to_string(), Arc::downgrade(&fresh));
        fresh
    }

    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A token named a `kid` we do not know: fetch again when the cooldown allows.
    pub fn want_refresh(&self) {
        self.refresh_wanted.store(true, Ordering::Relaxed);
    }

    /// `Err(why)` until a key set has been loaded.
    pub fn readiness(&self) -> Result<(), String> {
        if self.keys.load().is_some() {
            return Ok(());
        }
        let err = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
        Err(format!(
            "JWKS {} not loaded yet{}",
            self.shown,
            err.map(|e| format!(": {e}")).unwrap_or_default()
        ))
    }

    /// Whether a fetch should start now.
    fn due(&self, now: Instant) -> bool {
        if self.fetching.load(Ordering::Acquire) {
            return false;
        }
        let last_attempt = *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
        let Some(last_attempt) = last_attempt else {
            return true;
        };
        let since = now.duration_since(last_attempt);
        let failing = self.last_error.lock().map(|e| e.is_some()).unwrap_or(false);
        let wanted = self.refresh_wanted.load(Ordering::Relaxed);
        since >= self.schedule.refresh || ((failing || wanted) && since >= self.schedule.cooldown)
    }

    async fn fetch_now(&self) {
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.refresh_wanted.store(false, Ordering::Relaxed);
        let outcome = match fetch(&self.url, self.schedule.timeout).await {
            Ok(body) => KeySet::parse(&body),
            Err(e) => Err(e),
        };
        let result = match outcome {
            Ok(set) => {
                self.keys.store(Some(Arc::new(set)));
                self.generation.fetch_add(1, Ordering::AcqRel);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                "success"
            }
            Err(e) => {
                log::warn!(
                    "JWKS fetch from {} failed (keeping the previous key set): {e}",
                    self.shown
                );
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                "failure"
            }
        };
        metrics::get()
            .jwks_fetches
            .with_label_values(&[&self.shown, result])
            .inc();
    }
}

/// The largest JWK set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// GET `url` (http or https); the body of a 200 answer.
async fn fetch(url: &str, timeout: Duration) -> Result<String, String> {
    let (status, body) = crate::upstream::url_call::call(crate::upstream::url_call::UrlRequest {
        method: "GET",
        url,
        headers: &[("accept", "application/json")],
        body: None,
        timeout,
        max_body: MAX_JWKS_BYTES,
    })
    .await?;
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    String::from_utf8(body).map_err(|_| "JWK set is not UTF-8".to_string())
}

/// Source of the remote key sets to keep fresh: those of the current snapshot.
pub type JwksSource = Arc<dyn Fn() -> Vec<Arc<RemoteJwks>> + Send + Sync>;

/// Fetches every remote key set when due.
pub struct JwksRefresher {
    sets: JwksSource,
}

impl JwksRefresher {
    pub fn new(sets: JwksSource) -> JwksRefresher {
        JwksRefresher { sets }
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let now = Instant::now();
            for set in (self.sets)() {
                if set.due(now) && !set.fetching.swap(true, Ordering::AcqRel) {
                    tokio::spawn(async move {
                        set.fetch_now().await;
                        set.fetching.store(false, Ordering::Release);
                    });
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}
