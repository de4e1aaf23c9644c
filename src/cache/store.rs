//! The process's response store: entries keyed exactly (the whole key text, so two requests
//! never share an entry by a hash collision), bounded by `server.cache.max_memory` (moka:
//! TinyLFU admission, LRU eviction, each entry weighed in bytes), each kept until its freshness,
//! stale windows and revalidation time are over. Plus the fill locks that make concurrent
//! misses for one key wait for a single upstream request, and the invalidation generations
//! that keep a fill which was already asking the upstream when its target was invalidated
//! from storing the answer the invalidation was about.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::HeaderName;
use moka::notification::RemovalCause;
use pingora::http::ResponseHeader;
use tokio::sync::watch;

use crate::observe::metrics;

/// One stored answer.
pub struct Object {
    /// The head as it would go to a client before the per-request decoration: hop-by-hop
    /// headers removed, `Content-Length` the body's.
    pub head: ResponseHeader,
    pub body: Bytes,
    /// When the gateway received it (or last revalidated it), and the `Age` it came with.
    pub received: SystemTime,
    pub initial_age: Duration,
    pub fresh_until: SystemTime,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// Until when the store keeps it at all.
    pub keep_until: Instant,
    pub label: Arc<Label>,
    /// The origin said `public` (it may be shared by consumers where the route allows).
    pub public: bool,
}

impl Object {
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// How long it has been stale at `now` (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// RFC 9111 §4.2.3: the age it came with plus its time here.
    pub fn age(&self, now: SystemTime) -> Duration {
        // Saturating: the age it came with is bounded (`policy::MAX_DELTA_SECONDS`), but an
        // answer's age must never be able to panic the request that serves it.
        self.initial_age
            .saturating_add(now.duration_since(self.received).unwrap_or_default())
    }

    pub fn has_validator(&self) -> bool {
        self.head.headers.contains_key(http::header::ETAG)
            || self.head.headers.contains_key(http::header::LAST_MODIFIED)
    }

    fn weight(&self, key: &str) -> u32 {
        let head: usize = self
            .head
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        u32::try_from(key.len() + head + self.body.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }
}

/// What purges match on: the route, the request path and the printable key.
#[derive(Debug)]
pub struct Label {
    pub route: String,
    pub path: String,
    /// `route:host/path?query`, as `/cache/purge` takes prefixes of it.
    pub printable: String,
}

/// What is stored under a key.
#[derive(Clone)]
pub enum Item {
    Object(Arc<Object>),
    /// The origin varies this key's answers on these request headers: the answers are stored
    /// under the key extended by their values and `generation`. A record written after an
    /// invalidation has a new generation, so the variants stored before it stay unreachable.
    Variants {
        names: Arc<[HeaderName]>,
        keep_until: Instant,
        label: Arc<Label>,
        generation: u64,
    },
}

impl Item {
    fn keep_until(&self) -> Instant {
        match self {
            Item::Object(o) => o.keep_until,
            Item::Variants { keep_until, .. } => *keep_until,
        }
    }

    fn label(&self) -> &Label {
        match self {
            Item::Object(o) => &o.label,
            Item::Variants { label, .. } => label,
        }
    }

    fn label_arc(&self) -> Arc<Label> {
        match self {
            Item::Object(o) => Arc::clone(&o.label),
            Item::Variants { label, .. } => Arc::clone(label),
        }
    }

    fn weight(&self, key: &str) -> u32 {
        match self {
            Item::Object(o) => o.weight(key),
            Item::Variants { names, .. } => {
                let names: usize = names.iter().map(|n| n.as_str().len() + 16).sum();
                u32::try_from(key.len() + names + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            }
        }
    }
}

/// What an entry costs beyond its bytes: moka's node, the `Arc`s, the head's maps.
const ENTRY_OVERHEAD: usize = 512;

struct KeepUntil;

impl moka::Expiry<Arc<str>, Item> for KeepUntil {
    fn expire_after_create(&self, _key: &Arc<str>, value: &Item, now: Instant) -> Option<Duration> {
        Some(value.keep_until().saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Item,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_until().saturating_duration_since(now))
    }
}

/// How many invalidation generations there are: targets share them by the hash of their
/// label, and a fill whose target shares one with an invalidated target only loses its store.
const GENERATIONS: usize = 1024;

/// The store and its fill locks.
pub struct Store {
    entries: moka::sync::Cache<Arc<str>, Item>,
    fills: Mutex<HashMap<Arc<str>, watch::Receiver<()>>>,
    /// Bumped by every invalidation of a target hashing to it (see [`Store::generation`]).
    generations: Box<[AtomicU64]>,
    hasher: RandomState,
    bytes: Arc<AtomicI64>,
    objects: Arc<AtomicI64>,
    pub max_object: u64,
}

impl Store {
    pub fn new(max_memory: u64, max_object: u64) -> Store {
        let bytes = Arc::new(AtomicI64::new(0));
        let objects = Arc::new(AtomicI64::new(0));
        let (gone_bytes, gone_objects) = (Arc::clone(&bytes), Arc::clone(&objects));
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_memory)
            .weigher(|key: &Arc<str>, item: &Item| item.weight(key))
            .expire_after(KeepUntil)
            .eviction_listener(move |key: Arc<Arc<str>>, item: Item, cause| {
                gone_bytes.fetch_sub(i64::from(item.weight(&key)), Ordering::Relaxed);
                if matches!(item, Item::Object(_)) {
                    gone_objects.fetch_sub(1, Ordering::Relaxed);
                }
                let reason = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Explicit => "purged",
                    RemovalCause::Replaced => return publish(&gone_bytes, &gone_objects),
                };
                metrics::get().cache_evictions.with_label_values(&[reason]).inc();
                publish(&gone_bytes, &gone_objects);
            })
            .build();
        Store {
            entries,
            fills: Mutex::new(HashMap::new()),
            generations: (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            bytes,
            objects,
            max_object,
        }
    }

    pub fn get(&self, key: &str) -> Option<Item> {
        self.entries.get(key)
    }

    pub fn insert(&self, key: Arc<str>, item: Item) {
        self.bytes
            .fetch_add(i64::from(item.weight(&key)), Ordering::Relaxed);
        if matches!(item, Item::Object(_)) {
            self.objects.fetch_add(1, Ordering::Relaxed);
        }
        self.entries.insert(key, item);
        publish(&self.bytes, &self.objects);
    }

    fn generation_of(&self, target: &str) -> &AtomicU64 {
        let slot = self.hasher.hash_one(target) as usize % GENERATIONS;
        &self.generations[slot]
    }

    /// The invalidation generation of `target` (an entry label's printable form): a fill
    /// notes it before it asks the upstream and hands it to [`Store::insert_since`].
    pub fn generation(&self, target: &str) -> u64 {
        self.generation_of(target).load(Ordering::SeqCst)
    }

    /// Invalidate `target`: its generation moves on (so no fill begun before now stores its
    /// answer), then `keys` go (a variants record makes its variants unreachable).
    pub fn invalidate(&self, target: &str, keys: impl IntoIterator<Item = Arc<str>>) {
        self.generation_of(target).fetch_add(1, Ordering::SeqCst);
        for key in keys {
            self.entries.invalidate(key.as_ref());
        }
    }

    /// Store `items` for `target` unless it was invalidated after generation `since`: checked
    /// before and again after inserting, so an invalidation that lands in between (its
    /// generation moves first, its removal after) is never undone. Whether they stayed.
    pub fn insert_since(&self, target: &str, since: u64, items: Vec<(Arc<str>, Item)>) -> bool {
        if self.generation(target) != since {
            return false;
        }
        let keys: Vec<Arc<str>> = items.iter().map(|(key, _)| Arc::clone(key)).collect();
        for (key, item) in items {
            self.insert(key, item);
        }
        if self.generation(target) == since {
            return true;
        }
        for key in keys {
            self.entries.invalidate(key.as_ref());
        }
        false
    }

    /// Remove every entry `matches` selects (their targets invalidated, as by
    /// [`Store::invalidate`]); how many objects went.
    pub fn purge(&self, matches: impl Fn(&Label) -> bool) -> usize {
        let doomed: Vec<(Arc<Arc<str>>, bool, Arc<Label>)> = self
            .entries
            .iter()
            .filter(|(_, item)| matches(item.label()))
            .map(|(key, item)| (key, matches!(item, Item::Object(_)), item.label_arc()))
            .collect();
        for (key, _, label) in &doomed {
            self.generation_of(&label.printable)
                .fetch_add(1, Ordering::SeqCst);
            self.entries.invalidate(key.as_ref().as_ref());
        }
        self.entries.run_pending_tasks();
        doomed.iter().filter(|(_, object, _)| *object).count()
    }

    /// Housekeeping now (eviction and expiry otherwise run as requests touch the store).
    pub fn settle(&self) {
        self.entries.run_pending_tasks();
    }

    /// Fill `key`, or wait for the request already filling it.
    pub fn fill(self: &Arc<Self>, key: &Arc<str>) -> Fill {
        let Ok(mut fills) = self.fills.lock() else {
            return Fill::Unlocked;
        };
        if let Some(rx) = fills.get(key) {
            return Fill::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        fills.insert(Arc::clone(key), rx);
        Fill::Lead(FillGuard {
            store: Arc::clone(self),
            key: Arc::clone(key),
            _tx: tx,
        })
    }
}

fn publish(bytes: &AtomicI64, objects: &AtomicI64) {
    let m = &metrics::get().cache_stored;
    m.with_label_values(&["bytes"])
        .set(bytes.load(Ordering::Relaxed).max(0));
    m.with_label_values(&["objects"])
        .set(objects.load(Ordering::Relaxed).max(0));
}

/// Who fills a key.
pub enum Fill {
    /// This request: others wait until the guard is dropped.
    Lead(FillGuard),
    /// Another request: wait for it (`changed()` returns once it is done).
    Wait(watch::Receiver<()>),
    /// The lock table is unusable (a panic elsewhere): go on unlocked.
    Unlocked,
}

/// Held by the request filling a key; waiters wake when it is dropped.
pub struct FillGuard {
    store: Arc<Store>,
    key: Arc<str>,
    _tx: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.store.fills.lock() {
            fills.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(body: usize, label: &str) -> Item {
        Item::Object(Arc::new(Object {
            head: ResponseHeader::build(200, None).expect("head"),
            body: Bytes::from(vec![b'x'; body]),
            received: SystemTime::now(),
            initial_age: Duration::ZERO,
            fresh_until: SystemTime::now() + Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            keep_until: Instant::now() + Duration::from_secs(60),
            label: Arc::new(Label {
                route: "r".into(),
                path: "/p".into(),
                printable: label.into(),
            }),
            public: false,
        }))
    }

    #[test]
    fn memory_stays_within_its_bound() {
        let store = Store::new(1 << 20, 64 << 10);
        for i in 0..2_000 {
            store.insert(Arc::from(format!("key {i}")), object(4096, "r:/p"));
        }
        store.settle();
        assert!(
            store.entries.weighted_size() <= 1 << 20,
            "{}",
            store.entries.weighted_size()
        );
        assert!(store.entries.entry_count() < 2_000);
    }

    #[test]
    fn purge_takes_what_matches() {
        let store = Store::new(1 << 20, 64 << 10);
        store.insert(Arc::from("a"), object(10, "r:h/a"));
        store.insert(Arc::from("b"), object(10, "r:h/b"));
        assert_eq!(store.purge(|l| l.printable.starts_with("r:h/a")), 1);
        assert!(store.get("a").is_none());
        assert!(store.get("b").is_some());
    }

    #[test]
    fn a_fill_begun_before_an_invalidation_stores_nothing() {
        let store = Store::new(1 << 20, 64 << 10);
        let since = store.generation("r:h/a");
        store.invalidate("r:h/a", [Arc::from("a")]);
        assert!(!store.insert_since("r:h/a", since, vec![(Arc::from("a"), object(10, "r:h/a"))]));
        assert!(store.get("a").is_none());
        // Begun after it: stored.
        let since = store.generation("r:h/a");
        assert!(store.insert_since("r:h/a", since, vec![(Arc::from("a"), object(10, "r:h/a"))]));
        assert!(store.get("a").is_some());
        // A purge moves the generation of what it removes.
        let since = store.generation("r:h/a");
        assert_eq!(store.purge(|l| l.printable == "r:h/a"), 1);
        assert_ne!(store.generation("r:h/a"), since);
    }

    #[tokio::test]
    async fn a_second_filler_waits_for_the_first() {
        let store = Arc::new(Store::new(1 << 20, 64 << 10));
        let key: Arc<str> = Arc::from("k");
        let lead = match store.fill(&key) {
            Fill::Lead(g) => g,
            _ => panic!("the first request leads"),
        };
        let Fill::Wait(mut rx) = store.fill(&key) else {
            panic!("the second waits")
        };
        drop(lead);
        assert!(rx.changed().await.is_err(), "the leader's end wakes the waiter");
        assert!(matches!(store.fill(&key), Fill::Lead(_)));
    }
}
