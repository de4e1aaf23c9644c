//! The local store: exact per-key state in a sharded map, for both algorithms.
//!
//! Every key has its own entry (two keys never share a counter, unlike the count-min sketch
//! this replaces, whose collisions over-counted and refused honest clients). Per key and per
//! window length, one slot:
//!
//! - `token_bucket` (GCRA): the theoretical arrival time `tat` (and the interval it was
//!   computed with, so a reload that changes the rate carries the usage over). A request at `now` is admitted
//!   when `max(tat, now) + T ≤ now + burst × T` (`T = per / requests`), and then moves `tat`
//!   to `max(tat, now) + T`. No refill task, no rounding beyond one nanosecond per request.
//! - `sliding_window`: the current fixed window's index and the counts of it and of the one
//!   before; the estimate is `previous × (1 − elapsed / per) + current`.
//!
//! Time is the monotonic clock, so a wall-clock step (NTP) neither admits a burst nor locks a
//! key out. Idle keys (every slot back to "no usage") are removed when a shard is full; a key
//! inside its window is never dropped: with no idle key to remove, a new key is refused
//! (fail closed) until one is. Each shard's lock is held for one decision, never across an
//! await.
//!
//! Keys are hashed with aHash, randomly keyed per process (and per shard table): built to resist
//! clients who choose keys to collide (a key may be any header's value), and cheaper than
//! std's SipHash, which a decision paid three times (shard, lookup, entry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use compact_str::CompactString;

use crate::config::{Algorithm, Limit};

/// The fewest shards; a store of many keys gets more (see [`shard_count`]).
const SHARDS: usize = 64;
/// Keys per shard when the store holds `max_keys`: 80 % of a 16,384-bucket table's 14,336
/// (7/8) load limit, so with the spread of a random hash no shard's table doubles before the
/// store is full. A table of 2^k buckets holds at most 7/8 of them and then doubles; with a
/// power-of-two shard count 1,000,000 keys land just past that limit in every shard and pay
/// for twice the buckets they use.
const KEYS_PER_SHARD: usize = 11_468;
/// After a sweep that freed nothing, the shard refuses new keys this long before sweeping again
/// (a full shard of active keys must not make every new key scan it).
const SWEEP_BACKOFF_NANOS: u64 = 100_000_000;

/// One window length's state for one key (see the module comment for each algorithm).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    a: u64,
    b: u64,
}

/// A key's slots, one per window length: inline for one or two windows (a per-second and a
/// per-hour limit is the usual shape), so a key of up to 24 bytes costs one table entry of 64
/// bytes and no allocation.
#[derive(Debug, Clone)]
enum Slots {
    Inline(u8, [Slot; 2]),
    Many(Box<[Slot]>),
}

impl Slots {
    fn new(windows: usize) -> Slots {
        match windows {
            0..=2 => Slots::Inline(windows.max(1) as u8, [Slot::default(); 2]),
            n => Slots::Many(vec![Slot::default(); n].into_boxed_slice()),
        }
    }

    fn as_slice(&self) -> &[Slot] {
        match self {
            Slots::Inline(n, slots) => slots.get(..usize::from(*n)).unwrap_or(slots),
            Slots::Many(slots) => slots,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Slot] {
        match self {
            Slots::Inline(n, slots) => {
                let n = usize::from(*n).min(slots.len());
                &mut slots[..n]
            }
            Slots::Many(slots) => slots,
        }
    }
}

struct Shard {
    /// Keys of up to 24 bytes are stored inline (`CompactString`).
    map: HashMap<CompactString, Slots, ahash::RandomState>,
    /// No sweep before this time (nanoseconds on the store's clock).
    next_sweep: u64,
}

/// One limit's state after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Requests left after this one (0 when refused).
    pub remaining: u64,
    /// Refused: time until a request would be admitted. Admitted: time until the quota is
    /// whole again (token bucket) or the current window ends (sliding window).
    pub reset: Duration,
    pub exceeded: bool,
}

pub struct LocalStore {
    algorithm: Algorithm,
    /// The distinct window lengths of the policy (its plans' included): a key's slots.
    windows: Vec<Duration>,
    max_keys: usize,
    /// Keys held, across shards (the bound is on the whole store: shards fill unevenly).
    keys: AtomicUsize,
    /// Where the next search of other shards for idle keys starts.
    sweep_cursor: AtomicUsize,
    shards: Box<[Mutex<Shard>]>,
    epoch: Instant,
}

/// What a decision found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Per limit, in order; admitted (and counted) unless one is exceeded.
    Decided(Vec<Usage>),
    /// The store is full of keys inside their windows: this new key cannot be tracked.
    Full,
}

impl LocalStore {
    pub fn new(
        algorithm: Algorithm,
        windows: &[Duration],
        expected_keys: usize,
        max_keys: usize,
    ) -> LocalStore {
        let shards = shard_count(max_keys);
        let per_shard = expected_keys.min(max_keys).div_ceil(shards);
        LocalStore {
            algorithm,
            windows: distinct(windows),
            max_keys,
            keys: AtomicUsize::new(0),
            sweep_cursor: AtomicUsize::new(0),
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        // Keyed apart from the shard choice: one hasher for both would give
                        // every key in a shard the same low bits, and the table one bucket.
                        map: HashMap::with_capacity_and_hasher(per_shard, ahash::RandomState::new()),
                        next_sweep: 0,
                    })
                })
                .collect(),
            epoch: Instant::now(),
        }
    }

    /// Whether this store was built for the same algorithm, windows and size (a reload keeps
    /// it, and with it every client's usage).
    pub fn same_shape(&self, algorithm: Algorithm, windows: &[Duration], max_keys: usize) -> bool {
        self.algorithm == algorithm && self.max_keys == max_keys && distinct(windows) == self.windows
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's clock (monotonic nanoseconds), for [`LocalStore::release`].
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &str) -> Option<&Mutex<Shard>> {
        static SEED: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
        let hash = SEED.get_or_init(ahash::RandomState::new).hash_one(key);
        self.shards.get((hash % self.shards.len() as u64) as usize)
    }

    /// Check every limit for `key` at `now` (see [`LocalStore::now`]) and, only if all have
    /// room, count the request in all.
    pub fn acquire(&self, key: &str, limits: &[Limit], now: u64) -> Decision {
        self.acquire_at(key, limits, now)
    }

    /// Take back a request `acquire` admitted at `acquired` (the store's clock, see
    /// [`LocalStore::now`]): another policy or the shared store refused it.
    pub fn release(&self, key: &str, limits: &[Limit], acquired: u64) {
        let key = stored_key(key);
        let Some(mut shard) = self.shard(&key).map(lock) else {
            return;
        };
        let Some(slots) = shard.map.get_mut(key.as_ref()).map(Slots::as_mut_slice) else {
            return;
        };
        for limit in limits {
            if let Some(slot) = self.slot_index(limit.per).and_then(|i| slots.get_mut(i)) {
                match self.algorithm {
                    // In the interval the slot's `tat` is kept in (a plan or a reload may have
                    // converted it since).
                    Algorithm::TokenBucket => {
                        let t = if slot.b != 0 { slot.b } else { interval(limit) };
                        slot.a = slot.a.saturating_sub(t);
                    }
                    Algorithm::SlidingWindow => {
                        // The request was counted in the window of `acquired`, which may since
                        // have become the previous one.
                        let counted = acquired / nanos(limit.per);
                        let (cur, prev) = split(slot.b);
                        if slot.a == counted {
                            slot.b = join(cur.saturating_sub(1), prev);
                        } else if slot.a == counted.saturating_add(1) {
                            slot.b = join(cur, prev.saturating_sub(1));
                        }
                    }
                }
            }
        }
    }

    fn slot_index(&self, per: Duration) -> Option<usize> {
        self.windows.iter().position(|w| *w == per)
    }

    fn acquire_at(&self, key: &str, limits: &[Limit], now: u64) -> Decision {
        let key = stored_key(key);
        let Some(mut shard) = self.shard(&key).map(lock) else {
            return Decision::Full;
        };
        if !shard.map.contains_key(key.as_ref()) {
            let room = self.reserve() || (self.make_room(&mut shard, now) && self.reserve());
            if !room {
                return Decision::Full;
            }
            shard
                .map
                .insert(CompactString::from(key.as_ref()), Slots::new(self.windows.len()));
        }
        let Some(slots) = shard.map.get_mut(key.as_ref()).map(Slots::as_mut_slice) else {
            return Decision::Full;
        };
        let mut out = Vec::with_capacity(limits.len());
        let mut next = Vec::with_capacity(limits.len());
        for limit in limits {
            let i = self.slot_index(limit.per).unwrap_or(0);
            let slot = slots.get(i).copied().unwrap_or_default();
            let (usage, updated) = match self.algorithm {
                Algorithm::TokenBucket => gcra(slot, limit, now),
                Algorithm::SlidingWindow => sliding(slot, limit, now),
            };
            out.push(usage);
            next.push((i, updated));
        }
        if !out.iter().any(|u| u.exceeded) {
            for (i, updated) in next {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = updated;
                }
            }
        }
        Decision::Decided(out)
    }

    /// Count one more key if the store has room: the count is taken before the key is
    /// inserted, so concurrent new keys in different shards never exceed `max_keys`.
    fn reserve(&self) -> bool {
        self.keys
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Remove idle keys to make room for one more: first in the shard the new key lands in
    /// (its lock is held), then, if that freed nothing, in the other shards that are not busy
    /// (`try_lock`, so two full shards sweeping each other never wait on each other), starting
    /// where the last such search stopped. The bound is on the whole store, so room made in
    /// any shard serves the new key.
    fn make_room(&self, shard: &mut Shard, now: u64) -> bool {
        if self.sweep(shard, now) > 0 {
            return true;
        }
        let count = self.shards.len();
        let start = self.sweep_cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            let Some(other) = self.shards.get((start + i) % count) else {
                continue;
            };
            // The caller's own shard is locked, so `try_lock` skips it.
            if let Ok(mut other) = other.try_lock() {
                if self.sweep(&mut other, now) > 0 {
                    return true;
                }
            }
        }
        false
    }

    /// Remove one shard's idle keys (unless it freed nothing within the last
    /// [`SWEEP_BACKOFF_NANOS`]); how many.
    fn sweep(&self, shard: &mut Shard, now: u64) -> usize {
        if now < shard.next_sweep {
            return 0;
        }
        let before = shard.map.len();
        shard.map.retain(|_, slots| !self.idle(slots.as_slice(), now));
        let freed = before - shard.map.len();
        self.keys.fetch_sub(freed, Ordering::Relaxed);
        if freed == 0 {
            shard.next_sweep = now.saturating_add(SWEEP_BACKOFF_NANOS);
        }
        freed
    }

    /// Every slot back to "no usage": dropping the key changes nothing.
    fn idle(&self, slots: &[Slot], now: u64) -> bool {
        slots
            .iter()
            .zip(&self.windows)
            .all(|(slot, per)| match self.algorithm {
                Algorithm::TokenBucket => slot.a <= now,
                // Never used, counts back to zero, or both windows over.
                Algorithm::SlidingWindow => {
                    let index = now / nanos(*per);
                    let (current, previous) = split(slot.b);
                    slot.b == 0
                        || slot.a.saturating_add(1) < index
                        || (slot.a.saturating_add(1) == index && current == 0)
                        || (slot.a == index && current == 0 && previous == 0)
                }
            })
    }
}

/// Shards for a store of at most `max_keys`: at least [`SHARDS`], and enough that a full store
/// holds about [`KEYS_PER_SHARD`] keys in each.
fn shard_count(max_keys: usize) -> usize {
    max_keys.div_ceil(KEYS_PER_SHARD).max(SHARDS)
}

/// A shard's lock; a poisoned one (a panic while held, which nothing here does) is still
/// usable: its map is consistent after every statement.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keys longer than this are kept as their SHA-256 (64 hex digits after a NUL, which no
/// request-derived key contains): a client choosing a long header value cannot make one key
/// cost more than this, and two keys still never share a counter (short of a SHA-256
/// collision).
const MAX_STORED_KEY: usize = 64;

fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_STORED_KEY {
        return std::borrow::Cow::Borrowed(key);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = String::with_capacity(65);
    out.push('\0');
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    std::borrow::Cow::Owned(out)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// The emission interval `T = per / requests` in nanoseconds.
fn interval(limit: &Limit) -> u64 {
    (nanos(limit.per) / limit.requests.max(1)).max(1)
}

/// GCRA for one limit at `now`: the usage, and the slot if the request is admitted. The slot
/// keeps the interval its `tat` was computed with: after a reload changed the limit's rate,
/// the requests still in the bucket are carried over in requests, not in time.
fn gcra(slot: Slot, limit: &Limit, now: u64) -> (Usage, Slot) {
    let t = u128::from(interval(limit));
    let now = u128::from(now);
    let mut tat = u128::from(slot.a).max(now);
    if slot.b != 0 && u128::from(slot.b) != t {
        tat = now + (tat - now) * t / u128::from(slot.b);
    }
    let new_tat = tat + t;
    let allowed_until = now + u128::from(limit.burst.max(1)) * t;
    let to_duration = |n: u128| Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX));
    if new_tat > allowed_until {
        return (
            Usage {
                remaining: 0,
                reset: to_duration(new_tat - allowed_until),
                exceeded: true,
            },
            slot,
        );
    }
    let usage = Usage {
        remaining: u64::try_from((allowed_until - new_tat) / t).unwrap_or(0),
        reset: to_duration(new_tat - now),
        exceeded: false,
    };
    let updated = Slot {
        a: u64::try_from(new_tat).unwrap_or(u64::MAX),
        b: u64::try_from(t).unwrap_or(u64::MAX),
    };
    (usage, updated)
}

fn split(b: u64) -> (u64, u64) {
    (b >> 32, b & 0xffff_ffff)
}

fn join(current: u64, previous: u64) -> u64 {
    (current.min(0xffff_ffff) << 32) | previous.min(0xffff_ffff)
}

/// The weighted two-window counter for one limit at `now`.
fn sliding(slot: Slot, limit: &Limit, now: u64) -> (Usage, Slot) {
    let per = nanos(limit.per);
    // A clock read older than the slot's window (a thread descheduled after reading it) is
    // taken as that window's start: it never rewinds the key's counts.
    let (index, elapsed) = match now / per {
        i if i < slot.a => (slot.a, 0),
        i => (i, now % per),
    };
    let (current, previous) = match index.checked_sub(slot.a) {
        Some(0) => split(slot.b),
        Some(1) => (0, split(slot.b).0),
        _ => (0, 0),
    };
    let left = (per - elapsed) as f64 / per as f64;
    let estimate = previous as f64 * left + current as f64;
    let room = limit.requests as f64 - estimate;
    if room < 1.0 {
        let wait = sliding_wait(previous, current, elapsed, per, limit.requests);
        return (
            Usage {
                remaining: 0,
                reset: Duration::from_nanos(wait),
                exceeded: true,
            },
            slot,
        );
    }
    let usage = Usage {
        remaining: (room - 1.0).floor() as u64,
        reset: Duration::from_nanos(per - elapsed),
        exceeded: false,
    };
    let updated = Slot {
        a: index,
        b: join(current + 1, previous),
    };
    (usage, updated)
}

/// Nanoseconds until the estimate leaves room for one more request (`≤ requests − 1`).
fn sliding_wait(previous: u64, current: u64, elapsed: u64, per: u64, requests: u64) -> u64 {
    let budget = requests.saturating_sub(1) as f64;
    let per_f = per as f64;
    let to_end = (per - elapsed) as f64;
    if (current as f64) <= budget && previous > 0 {
        // This window: previous × (to_end − t) / per + current ≤ budget.
        let t = to_end - (budget - current as f64) * per_f / previous as f64;
        if t <= to_end {
            return t.max(0.0).ceil() as u64;
        }
    }
    // The next window: current × (per − t′) / per ≤ budget.
    let t2 = if current == 0 {
        0.0
    } else {
        (per_f - budget * per_f / current as f64).max(0.0)
    };
    (to_end + t2).ceil() as u64
}

fn distinct(windows: &[Duration]) -> Vec<Duration> {
    let mut distinct = windows.to_vec();
    distinct.sort();
    distinct.dedup();
    distinct
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limit(requests: u64, per_secs: u64, burst: u64) -> Limit {
        Limit {
            requests,
            per: Duration::from_secs(per_secs),
            burst,
        }
    }

    fn admitted(d: &Decision) -> bool {
        matches!(d, Decision::Decided(u) if !u.iter().any(|u| u.exceeded))
    }

    #[test]
    fn token_bucket_admits_the_burst_then_exactly_the_rate() {
        let l = [limit(10, 1, 20)];
        let s = LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 16, 1000);
        let t0 = 10 * SEC;
        for i in 0..20 {
            assert!(admitted(&s.acquire_at("k", &l, t0)), "burst request {i}");
        }
        let Decision::Decided(u) = s.acquire_at("k", &l, t0) else {
            panic!()
        };
        assert!(u[0].exceeded);
        assert_eq!(
            u[0].reset,
            Duration::from_millis(100),
            "one emission interval away"
        );
        // A client pacing at exactly the rate is always admitted after the burst.
        for i in 1..=100 {
            assert!(
                admitted(&s.acquire_at("k", &l, t0 + i * SEC / 10)),
                "paced request {i}"
            );
        }
        // 90 % of the rate from a full bucket: never refused.
        let s = LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 16, 1000);
        let gap = SEC / 9;
        for i in 0..1000 {
            assert!(
                admitted(&s.acquire_at("p", &[limit(10, 1, 10)], t0 + i * gap)),
                "{i}"
            );
        }
    }

    #[test]
    fn a_refused_request_costs_nothing_and_a_release_gives_the_request_back() {
        let l = [limit(2, 60, 2)];
        let s = LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 16, 1000);
        assert!(admitted(&s.acquire_at("k", &l, SEC)));
        assert!(admitted(&s.acquire_at("k", &l, SEC)));
        for _ in 0..5 {
            assert!(!admitted(&s.acquire_at("k", &l, SEC)));
        }
        s.release("k", &l, SEC);
        assert!(
            admitted(&s.acquire_at("k", &l, SEC)),
            "the released request is free again"
        );

        // Sliding window: released after its window rolled over, it leaves the previous count.
        let w = [limit(1, 10, 1)];
        let s = LocalStore::new(Algorithm::SlidingWindow, &[w[0].per], 16, 1000);
        assert!(admitted(&s.acquire_at("k", &w, 19 * SEC)));
        assert!(
            !admitted(&s.acquire_at("k", &w, 20 * SEC)),
            "the previous window still counts"
        );
        s.release("k", &w, 19 * SEC);
        assert!(
            admitted(&s.acquire_at("k", &w, 20 * SEC)),
            "taken out of the previous window"
        );

        // A long key costs no more than a short one, and stays its own.
        let long_a = "a".repeat(10_000);
        let long_b = format!("{}b", "a".repeat(9_999));
        let s = LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 16, 1000);
        for _ in 0..2 {
            assert!(admitted(&s.acquire_at(&long_a, &l, SEC)));
        }
        assert!(!admitted(&s.acquire_at(&long_a, &l, SEC)));
        assert!(admitted(&s.acquire_at(&long_b, &l, SEC)), "a different long key");
    }

    #[test]
    fn sliding_window_weights_the_previous_window_and_says_when_room_returns() {
        let l = [limit(10, 10, 10)];
        let s = LocalStore::new(Algorithm::SlidingWindow, &[l[0].per], 16, 1000);
        for _ in 0..10 {
            assert!(admitted(&s.acquire_at("k", &l, 100 * SEC + SEC)));
        }
        let Decision::Decided(u) = s.acquire_at("k", &l, 100 * SEC + SEC) else {
            panic!()
        };
        assert!(u[0].exceeded);
        // Next window (starts at 110 s): estimate = 10 × (1 − t/10 s) ≤ 9 from t = 1 s.
        assert_eq!(u[0].reset, Duration::from_secs(10));
        assert!(!admitted(&s.acquire_at("k", &l, 110 * SEC + SEC / 2)));
        assert!(admitted(&s.acquire_at("k", &l, 111 * SEC)));
    }

    #[test]
    fn idle_keys_make_room_and_active_keys_are_never_dropped() {
        let l = [limit(1, 1, 1)];
        // At most 64 keys.
        let s = LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 1, SHARDS);
        let mut full = 0;
        for i in 0..10 * SHARDS {
            if s.acquire_at(&format!("k{i}"), &l, SEC) == Decision::Full {
                full += 1;
            }
        }
        assert!(full > 0, "active keys are kept: new ones are refused");
        assert_eq!(s.len(), SHARDS);
        // Two seconds later every key is idle: new keys find room.
        let fresh = (0..SHARDS)
            .filter(|i| admitted(&s.acquire_at(&format!("m{i}"), &l, 3 * SEC + SWEEP_BACKOFF_NANOS)))
            .count();
        assert!(fresh > 0);
        assert!(s.len() <= SHARDS, "never more than max_keys");
    }

    /// The idle keys are in other shards than the new key's: they still make room for it, and
    /// every one of `max_keys` new keys is admitted once all the old ones are idle.
    #[test]
    fn idle_keys_in_any_shard_make_room() {
        let l = [limit(1, 1, 1)];
        let max = 8;
        let s = LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 1, max);
        for i in 0..max {
            assert!(admitted(&s.acquire_at(&format!("old{i}"), &l, SEC)));
        }
        assert_eq!(s.acquire_at("new-while-active", &l, SEC), Decision::Full);
        // Later, all idle: each new key finds room, wherever its shard is.
        let later = 3 * SEC + SWEEP_BACKOFF_NANOS;
        for i in 0..max {
            assert!(
                admitted(&s.acquire_at(&format!("new{i}"), &l, later)),
                "new{i} refused although idle keys were there"
            );
        }
        assert_eq!(s.len(), max);
    }

    /// Concurrent new keys never take the store past `max_keys` (the count is reserved before
    /// the insert).
    #[test]
    fn concurrent_new_keys_never_exceed_max_keys() {
        let l = [limit(1, 3600, 1)];
        let max = 1000;
        let s = std::sync::Arc::new(LocalStore::new(Algorithm::TokenBucket, &[l[0].per], 10, max));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..2000)
                        .filter(|i| admitted(&s.acquire_at(&format!("t{t}-{i}"), &l, SEC)))
                        .count()
                })
            })
            .collect();
        let admitted_total: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(admitted_total, max);
        assert_eq!(s.len(), max);
    }

    #[test]
    fn a_clock_far_behind_a_slot_never_underflows() {
        let l = [limit(5, 1, 5)];
        for algorithm in [Algorithm::TokenBucket, Algorithm::SlidingWindow] {
            let s = LocalStore::new(algorithm, &[l[0].per], 16, 1000);
            assert!(admitted(&s.acquire_at("k", &l, 100 * SEC)));
            // An earlier reading (a thread descheduled after reading the clock).
            let _ = s.acquire_at("k", &l, SEC);
            let _ = s.acquire_at("k", &l, 0);
        }
    }
}
