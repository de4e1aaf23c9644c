//! Property-based fuzz targets for the parsers that read untrusted input, on the stable
//! toolchain: a structured generator (seeded `rand`) biased toward the inputs that break
//! parsers, a property checked on every input, and a shrinker for what fails.
//!
//! Each `#[test]` runs one target for `PORTCULLIS_FUZZ_SECONDS` (default 2, so
//! `cargo test` stays short) or `PORTCULLIS_FUZZ_MAX_ITERATIONS` inputs, whichever ends first,
//! and prints `fuzz <target>: N executions, 0 findings`. The seed is printed at the start;
//! `PORTCULLIS_FUZZ_SEED=<seed>` replays a run, and `PORTCULLIS_FUZZ_ITERATION=<i>` replays
//! just the input a finding names. `./scripts/fuzz.sh [SECONDS]` runs every target longer.
//!
//! Targets: `path` (request-target normalization), `jwt` (token header and claims), `config`
//! (the YAML configuration decoder), `headers` (media types,
//! `Accept-Version`, cookies and other credential sources, query parameters, content codings)
//! and `transform` (the bounded JSON parser, JSON paths, document rules, bodies, query rules).

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------------
// The harness: time-bounded loop, seeds, quiet panics, shrinking.
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// While set, the panic hook prints nothing (inputs are being tried, and the finding is
    /// reported once, shrunk).
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened (`file:line`).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// How often each outcome was seen in this target (shows what the generator reaches).
    static OUTCOMES: RefCell<std::collections::BTreeMap<&'static str, u64>> =
        const { RefCell::new(std::collections::BTreeMap::new()) };
}

/// Count one outcome of the current target.
fn note(outcome: &'static str) {
    OUTCOMES.with(|o| *o.borrow_mut().entry(outcome).or_insert(0) += 1);
}

fn take_outcomes() -> String {
    OUTCOMES.with(|o| {
        std::mem::take(&mut *o.borrow_mut())
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(location));
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// One seed per process, shared by every target, so one number replays a whole run.
fn base_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        env_parse("PORTCULLIS_FUZZ_SEED").unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            mix(nanos ^ u64::from(std::process::id()))
        })
    })
}

/// SplitMix64's finalizer: spreads nearby seeds apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

/// Run `check` on one input; `Err((location, message))` if it panicked.
fn run_one<I>(check: &mut impl FnMut(&I), input: &I) -> Result<(), (String, String)> {
    QUIET.with(|q| q.set(true));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = panic::catch_unwind(AssertUnwindSafe(|| check(input)));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into());
        let location = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
        (location, message)
    })
}

/// Inputs that can be made smaller: candidates, simplest first.
trait Shrink: Clone + Debug {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_>;
}

/// `(start, len)` of the ranges to try removing from `n` items: halves, quarters, … single items.
fn removals(n: usize) -> impl Iterator<Item = (usize, usize)> {
    std::iter::successors(Some(n), |s| (*s > 1).then_some(s / 2))
        .filter(|s| *s > 0)
        .flat_map(move |size| {
            (0..n)
                .step_by(size)
                .map(move |start| (start, size.min(n - start)))
        })
}

impl Shrink for u8 {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        Box::new(std::iter::empty())
    }
}

impl Shrink for usize {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        Box::new(std::iter::empty())
    }
}

impl<T: Shrink> Shrink for Vec<T> {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        let n = self.len();
        let removed = removals(n).map(move |(start, len)| {
            let mut v = self.clone();
            v.drain(start..start + len);
            v
        });
        let inner = (0..n).flat_map(move |i| {
            self[i].shrink().map(move |item| {
                let mut v = self.clone();
                v[i] = item;
                v
            })
        });
        Box::new(removed.chain(inner))
    }
}

impl Shrink for String {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        let lines: Vec<&str> = self.split_inclusive('\n').collect();
        let by_line = if lines.len() > 1 {
            let n = lines.len();
            Some(removals(n).map(move |(start, len)| {
                let mut s = lines[..start].concat();
                s.push_str(&lines[start + len..].concat());
                s
            }))
        } else {
            None
        };
        let chars: Vec<char> = self.chars().collect();
        let n = chars.len();
        let by_char = removals(n).map(move |(start, len)| {
            chars[..start]
                .iter()
                .chain(&chars[start + len..])
                .collect::<String>()
        });
        Box::new(by_line.into_iter().flatten().chain(by_char))
    }
}

/// Bytes shown as a byte string (`b"/a%2F\xff"`), so a finding can be pasted into a test.
#[derive(Clone, Default, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Shrink for Bytes {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        Box::new(self.0.shrink().map(Bytes))
    }
}

impl<A: Shrink, B: Shrink> Shrink for (A, B) {
    fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        let a = self.0.shrink().map(move |a| (a, self.1.clone()));
        let b = self.1.shrink().map(move |b| (self.0.clone(), b));
        Box::new(a.chain(b))
    }
}

/// The smallest input found (within a bound) that still fails at `location`.
fn minimize<I: Shrink>(input: I, location: &str, check: &mut impl FnMut(&I)) -> (I, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut best, mut message, mut tries) = (input, String::new(), 0u32);
    loop {
        let mut found = None;
        for candidate in best.shrink() {
            if Instant::now() > deadline || tries > 20_000 {
                break;
            }
            tries += 1;
            if let Err((loc, msg)) = run_one(check, &candidate) {
                if loc == location {
                    found = Some((candidate, msg));
                    break;
                }
            }
        }
        match found {
            Some((smaller, msg)) => {
                best = smaller;
                message = msg;
            }
            None => break,
        }
    }
    (best, message)
}

/// Run one target: generate, check, count; on the first failing input, shrink it, print the
/// replay command and fail the test.
fn fuzz<I: Shrink>(name: &str, mut generate: impl FnMut(&mut StdRng) -> I, mut check: impl FnMut(&I)) -> u64 {
    install_panic_hook();
    let seconds: f64 = env_parse("PORTCULLIS_FUZZ_SECONDS").unwrap_or(2.0);
    let max: u64 = env_parse("PORTCULLIS_FUZZ_MAX_ITERATIONS").unwrap_or(100_000_000);
    let only: Option<u64> = env_parse("PORTCULLIS_FUZZ_ITERATION");
    let seed = base_seed();
    let target_seed = mix(seed ^ name_hash(name));
    let budget = Duration::from_secs_f64(seconds.max(0.0));
    eprintln!("fuzz {name}: seed {seed}, {seconds} s, at most {max} executions");
    take_outcomes();
    let start = Instant::now();
    let mut executions = 0u64;
    loop {
        let done = match only {
            Some(_) => executions >= 1,
            None => executions >= max || (executions > 0 && start.elapsed() >= budget),
        };
        if done {
            break;
        }
        let i = only.unwrap_or(executions);
        let mut rng = StdRng::seed_from_u64(mix(target_seed.wrapping_add(mix(i))));
        let input = generate(&mut rng);
        executions += 1;
        if let Err((location, message)) = run_one(&mut check, &input) {
            let (small, small_message) = minimize(input.clone(), &location, &mut check);
            println!("fuzz {name}: {executions} executions, 1 findings");
            panic!(
                "fuzz {name}: FINDING at {location}: {message}\n\
                 replay: PORTCULLIS_FUZZ_SEED={seed} PORTCULLIS_FUZZ_ITERATION={i} \
                 cargo test --release --test fuzz fuzz_{name}\n\
                 input: {input:?}\n\
                 minimized: {small:?}\n\
                 minimized input fails with: {small_message}"
            );
        }
    }
    println!(
        "fuzz {name}: {executions} executions, 0 findings ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    eprintln!("fuzz {name}: outcomes: {}", take_outcomes());
    executions
}

// ---------------------------------------------------------------------------------------------
// Generator helpers.
// ---------------------------------------------------------------------------------------------

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

fn pick_str<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn pick_bytes<'a>(rng: &mut StdRng, items: &[&'a [u8]]) -> &'a [u8] {
    items[rng.gen_range(0..items.len())]
}

/// One of `texts`, read as JSON.
fn pick_json(rng: &mut StdRng, texts: &[&str]) -> serde_json::Value {
    serde_json::from_str(pick_str(rng, texts)).unwrap_or(serde_json::Value::Null)
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| rng.gen()).collect()
}

/// Text made of `atoms` (and now and then a random char), up to `max` atoms.
fn atoms_text(rng: &mut StdRng, atoms: &[&str], max: usize) -> String {
    let mut s = String::new();
    for _ in 0..rng.gen_range(0..=max) {
        if rng.gen_bool(0.05) {
            s.push(random_char(rng));
        } else {
            s.push_str(pick_str(rng, atoms));
        }
    }
    s
}

fn random_char(rng: &mut StdRng) -> char {
    match rng.gen_range(0..6) {
        0 => char::from(rng.gen_range(0u8..0x80)),
        1 => *pick(
            rng,
            &[
                'é', 'ß', '\u{feff}', '\u{202e}', '\u{ff0f}', '\u{2028}', '😀', '\u{85}',
            ],
        ),
        2 => char::from_u32(rng.gen_range(0x80..0x800)).unwrap_or('x'),
        3 => char::from_u32(rng.gen_range(0x800..0x11_0000)).unwrap_or('x'),
        _ => char::from(rng.gen_range(0x20u8..0x7f)),
    }
}

/// Byte-level mutations: delete, duplicate, insert (a dictionary token or a random byte),
/// overwrite, truncate.
fn mutate_bytes(rng: &mut StdRng, data: &mut Vec<u8>, dict: &[&[u8]], rounds: usize) {
    for _ in 0..rounds {
        let n = data.len();
        let at = if n == 0 { 0 } else { rng.gen_range(0..=n) };
        match rng.gen_range(0..7) {
            0 if n > 0 => {
                let len = rng.gen_range(1..=(n - at.min(n - 1)).min(8));
                let at = at.min(n - len);
                data.drain(at..at + len);
            }
            1 if n > 0 => {
                let at = at.min(n - 1);
                let len = rng.gen_range(1..=(n - at).min(16));
                let copy = data[at..at + len].to_vec();
                data.splice(at..at, copy);
            }
            2 if !dict.is_empty() => {
                let token = pick(rng, dict).to_vec();
                data.splice(at..at, token);
            }
            3 => data.insert(at, rng.gen()),
            4 if n > 0 => {
                let i = rng.gen_range(0..n);
                data[i] = *pick(
                    rng,
                    &[0u8, 0xff, b'\r', b'\n', b'.', b'/', b'%', b'"', b'\\', 0x80],
                );
            }
            5 if n > 0 => data.truncate(at),
            _ if n > 0 => {
                let i = rng.gen_range(0..n);
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            _ => data.push(rng.gen()),
        }
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn manifest_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Target `path`: request-target normalization.
// ---------------------------------------------------------------------------------------------

mod path_target {
    use super::*;
    use portcullis::routing::normalize::{
        has_segment_prefix, normalize_target, strip_segment_prefix, NormalizedTarget, PathError,
    };

    /// Path pieces: separators, dot segments in every spelling, escapes, matrix parameters.
    #[rustfmt::skip]
    const ATOMS: &[&[u8]] = &[
        b"/", b"/", b"/", b"//", b"///", b".", b"..", b"...", b"%2e", b"%2E", b"%2e%2e", b".%2e",
        b"%20", b"%25", b"%252e", b"%252f", b"%3b", b"%3B", b"%3f", b"%23", b";",
        b";x=1", b"..;", b".;", b"?", b"&", b"=", b"%41", b"%61", b"%7e", b"%7E",
        b"%2d", b"%5f", b"%30", b"%c3%a9", b"%C3%A9", b"%ff", b"%80", b"\xc3\xa9", b"\xe2\x80\xae",
        b"\xef\xbc\x8f", b"\xef\xbc\x8e", b"\xe2\x88\x95", b"\xff", b"\x80", b"\xc0\xaf", b"a", b"b",
        b"admin", b"users", b"~", b"-", b"_", b"@", b":", b"*", b"+", b"!", b"$", b"'", b"(", b")", b",",
        b"[", b"]",
    ];
    /// Encoded separators, backslashes and malformed escapes: refused, so less frequent.
    const TRICKY: &[&[u8]] = &[b"%2f", b"%2F", b"%5c", b"%5C", b"\\", b"%", b"%z", b"%4"];
    /// Pieces every target with them is refused for: kept rare so most inputs get further.
    #[rustfmt::skip]
    const RARE: &[&[u8]] = &[
        b"%00", b"%0a", b"%0d", b"%1f", b"%7f", b"%7F", b"#", b" ", b"\t", b"\0", b"\r\n", b"\x7f",
    ];

    pub fn generate(rng: &mut StdRng) -> (Bytes, usize) {
        let mut raw = Vec::new();
        if rng.gen_bool(0.05) {
            raw = random_bytes(rng, 40);
        } else {
            if rng.gen_bool(0.92) {
                raw.push(b'/');
            }
            for _ in 0..rng.gen_range(0..32) {
                match rng.gen_range(0..100) {
                    0 | 1 => raw.push(rng.gen()),
                    2 | 3 => raw.extend_from_slice(pick_bytes(rng, RARE)),
                    4..=7 => raw.extend_from_slice(pick_bytes(rng, TRICKY)),
                    _ => raw.extend_from_slice(pick_bytes(rng, ATOMS)),
                }
            }
        }
        if rng.gen_bool(0.1) {
            let rounds = rng.gen_range(1..4);
            let dict = *pick(rng, &[ATOMS, ATOMS, TRICKY, RARE]);
            mutate_bytes(rng, &mut raw, dict, rounds);
        }
        let max = if rng.gen_bool(0.05) {
            rng.gen_range(0..64)
        } else {
            8192
        };
        (Bytes(raw), max)
    }

    fn has_ci(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
    }

    fn is_unreserved(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    }

    fn is_control_or_space(b: u8) -> bool {
        b <= 0x20 || b == 0x7f
    }

    /// What the module documents about a canonical path.
    fn assert_canonical(path: &str) {
        assert!(path.starts_with('/'), "does not start with '/': {path:?}");
        assert!(path.is_ascii(), "not ASCII: {path:?}");
        for b in path.bytes() {
            assert!(!is_control_or_space(b), "control byte or space in {path:?}");
            assert!(!matches!(b, b'\\' | b'#' | b'?'), "'\\', '#' or '?' in {path:?}");
        }
        assert!(!path.contains("//"), "'//' in {path:?}");
        assert!(
            !path.contains("/./") && !path.contains("/../"),
            "dot segment in {path:?}"
        );
        assert!(
            !path.ends_with("/.") && !path.ends_with("/.."),
            "dot segment at the end of {path:?}"
        );
        let upper = path.to_ascii_uppercase();
        assert!(
            !upper.contains("%2F") && !upper.contains("%5C"),
            "encoded separator in {path:?}"
        );
        let segments: Vec<&str> = path[1..].split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            assert!(
                !seg.is_empty() || i == segments.len() - 1,
                "empty segment in {path:?}"
            );
            assert!(*seg != "." && *seg != "..", "dot segment in {path:?}");
            let dots = seg.bytes().take_while(|b| *b == b'.').count();
            if dots == 1 || dots == 2 {
                let after = &seg[dots..];
                assert!(
                    !after.starts_with(';') && !after.to_ascii_uppercase().starts_with("%3B"),
                    "dot segment with parameters in {path:?}"
                );
            }
        }
        let bytes = path.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes.get(i + 1..i + 3).expect("truncated escape");
                assert!(
                    hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')),
                    "escape not in uppercase hex in {path:?}"
                );
                let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16).unwrap_or(0);
                assert!(!is_unreserved(v), "undecoded unreserved escape in {path:?}");
                assert!(v >= 0x20 && v != 0x7f, "escaped control byte in {path:?}");
                assert!(v != b'/' && v != b'\\', "encoded separator in {path:?}");
                i += 3;
            } else {
                i += 1;
            }
        }
    }

    pub fn check(input: &(Bytes, usize)) {
        let (raw, max) = (&input.0[..], input.1);
        let result = normalize_target(raw, max);
        let (path_part, query_part) = match raw.iter().position(|&b| b == b'?') {
            Some(q) => (&raw[..q], Some(&raw[q + 1..])),
            None => (raw, None),
        };
        // Rule order: length, fragment, raw control bytes, origin-form.
        if let Err(e) = &result {
            note(e.reason());
        }
        if raw.len() > max {
            assert_eq!(result, Err(PathError::TooLong));
            return;
        }
        if raw.contains(&b'#') {
            assert_eq!(result, Err(PathError::Fragment));
            return;
        }
        if raw.iter().any(|&b| is_control_or_space(b)) {
            assert_eq!(result, Err(PathError::ControlByte));
            return;
        }
        if path_part.first() != Some(&b'/') {
            assert_eq!(result, Err(PathError::NotOriginForm));
            return;
        }
        match result {
            Err(e) => {
                assert!(!e.reason().is_empty());
                assert_eq!(e.to_string(), e.reason());
                let consistent = match e {
                    PathError::TooLong | PathError::Fragment | PathError::NotOriginForm => false,
                    PathError::ControlByte | PathError::BadEscape => raw.contains(&b'%'),
                    PathError::EncodedSeparator => has_ci(path_part, b"%2f") || has_ci(path_part, b"%5c"),
                    PathError::Backslash => path_part.contains(&b'\\'),
                    PathError::DotSegmentParam => path_part.contains(&b';') || has_ci(path_part, b"%3b"),
                    PathError::EscapesRoot => path_part.contains(&b'.') || has_ci(path_part, b"%2e"),
                };
                assert!(consistent, "{e:?} for {:?}", lossy(raw));
            }
            Ok(NormalizedTarget { path, query }) => {
                note("accepted");
                assert_canonical(&path);
                assert!(!path_part.contains(&b'\\'), "backslash accepted");
                assert!(
                    !has_ci(path_part, b"%2f") && !has_ci(path_part, b"%5c"),
                    "encoded separator accepted"
                );
                assert!(
                    path.len() <= 3 * path_part.len() + 1,
                    "output much longer than input"
                );
                match (query_part, &query) {
                    (None, None) => {}
                    (Some(raw_q), Some(q)) => {
                        assert!(!q.contains('#'));
                        assert!(!q.bytes().any(is_control_or_space), "control byte in query");
                        if let Ok(text) = std::str::from_utf8(raw_q) {
                            assert_eq!(q, text, "a UTF-8 query must be kept verbatim");
                        }
                    }
                    other => panic!("query presence changed: {other:?}"),
                }
                // Idempotence: the canonical path is its own normalization.
                let again = normalize_target(path.as_bytes(), usize::MAX).expect("canonical path refused");
                assert_eq!(again.path, path, "normalizing twice changed the path");
                assert_eq!(again.query, None);
                if let Some(q) = &query {
                    let with_query = format!("{path}?{q}");
                    let again = normalize_target(with_query.as_bytes(), usize::MAX)
                        .expect("canonical target refused");
                    assert_eq!(again.path, path);
                    assert_eq!(again.query.as_deref(), Some(q.as_str()), "query not stable");
                }
                // Segment prefixes of a canonical path strip to canonical paths.
                let cut = path[1..].find('/').map_or(path.len(), |i| i + 1);
                for prefix in [&path[..cut], "/"] {
                    assert!(has_segment_prefix(&path, prefix), "{prefix:?} of {path:?}");
                    let stripped = strip_segment_prefix(&path, prefix);
                    let renorm = normalize_target(stripped.as_bytes(), usize::MAX).expect("stripped refused");
                    assert_eq!(renorm.path, stripped, "stripping {prefix:?} from {path:?}");
                }
                // Path templates: what a template route captures from a canonical path is one
                // whole canonical segment, and its rewrite is a canonical path again.
                for (template, prefix) in [("/{a}/{b}", true), ("/*/{a}", false), ("/{a}", true)] {
                    let t = portcullis::routing::template::PathTemplate::parse(template, prefix)
                        .expect("template");
                    if !t.matches(&path) {
                        continue;
                    }
                    note("template matched");
                    for name in t.names() {
                        let v = t.capture(&path, name).expect("a matching template captures");
                        assert!(
                            !v.is_empty() && v != "." && v != "..",
                            "{name}={v:?} from {path:?}"
                        );
                        assert!(
                            !v.contains('/')
                                && !has_ci(v.as_bytes(), b"%2f")
                                && !has_ci(v.as_bytes(), b"%5c")
                        );
                    }
                    let rewrite =
                        portcullis::routing::template::Rewrite::parse("/r/{a}.x", Some(&t)).expect("rewrite");
                    let out = rewrite
                        .apply(&path, Some(&t), None)
                        .expect("a matching template rewrites");
                    let renorm = normalize_target(out.as_bytes(), usize::MAX).expect("rewrite refused");
                    assert_eq!(renorm.path, out, "rewrite of {path:?} by {template}");
                }
            }
        }
    }
}

#[test]
fn fuzz_path() {
    fuzz("path", path_target::generate, path_target::check);
}

// ---------------------------------------------------------------------------------------------
// Target `jwt`: token header and claims parsing and verification.
// ---------------------------------------------------------------------------------------------

mod jwt_target {
    use super::*;
    use aws_lc_rs::hmac;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use portcullis::auth::jwt::JwtVerifier;
    use portcullis::config::{is_scope_token, CredentialSource, JwtConfig, JwtKeySource};
    use serde_json::{json, Map, Value};

    const SECRET: &[u8] = b"fuzz-only-hmac-secret-0123456789abcdef";
    const ISSUER: &str = "https://issuer.test";
    const LEEWAY: u64 = 30;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Signer {
        /// Not signed by any trusted key.
        Nobody,
        Rsa,
        Ec,
        Ed,
    }

    #[derive(Clone, Debug)]
    pub struct Token {
        pub token: String,
        /// Who signed `original` (asymmetric keys only; HMAC is checked by recomputing it).
        pub signer: Signer,
        pub original: String,
    }

    impl Shrink for Token {
        fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
            Box::new(self.token.shrink().map(move |token| Token {
                token,
                signer: self.signer,
                original: self.original.clone(),
            }))
        }
    }

    /// What a verifier was configured with, for the oracle.
    pub struct Spec {
        name: &'static str,
        verifier: JwtVerifier,
        hmac: bool,
        trusted: &'static [Signer],
        algorithms: &'static [&'static str],
        audiences: &'static [&'static str],
        max_age: Option<u64>,
        required: &'static [&'static str],
        kept: &'static [&'static str],
        cached: bool,
    }

    pub struct Keys {
        rsa: EncodingKey,
        ec: EncodingKey,
        ed: EncodingKey,
        attacker: EncodingKey,
        rsa_public_pem: Vec<u8>,
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(manifest_path(&format!("tests/fixtures/jwt/{name}"))).expect("JWT fixture")
    }

    pub fn keys() -> Keys {
        Keys {
            rsa: EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("rsa key"),
            ec: EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("ec key"),
            ed: EncodingKey::from_ed_pem(&fixture("ed_private.pem")).expect("ed key"),
            attacker: EncodingKey::from_rsa_pem(&fixture("attacker_rsa_private.pem")).expect("attacker key"),
            rsa_public_pem: fixture("rsa_public.pem"),
        }
    }

    fn config(keys: JwtKeySource, algorithms: Vec<Algorithm>) -> JwtConfig {
        JwtConfig {
            issuers: vec![ISSUER.into()],
            audiences: vec![],
            algorithms,
            keys,
            leeway: Duration::from_secs(LEEWAY),
            max_age: None,
            required_claims: vec![],
            token_from: vec![CredentialSource::Header(http::header::AUTHORIZATION)],
            forward_claims: vec![],
            cache_entries: 0,
        }
    }

    pub fn verifiers() -> Vec<Spec> {
        let mut out = Vec::new();
        let mut cfg = config(
            JwtKeySource::Secret(SECRET.to_vec()),
            vec![Algorithm::HS256, Algorithm::HS384],
        );
        cfg.audiences = vec!["api".into(), "other-api".into()];
        cfg.cache_entries = 256;
        out.push(Spec {
            name: "hs-cached",
            verifier: JwtVerifier::compile(&cfg, &["tenant".into()], None).expect("hs verifier"),
            hmac: true,
            trusted: &[],
            algorithms: &["HS256", "HS384"],
            audiences: &["api", "other-api"],
            max_age: None,
            required: &[],
            kept: &["tenant"],
            cached: true,
        });
        let mut cfg = config(JwtKeySource::Secret(SECRET.to_vec()), vec![Algorithm::HS256]);
        cfg.max_age = Some(Duration::from_secs(3600));
        cfg.required_claims = vec!["tenant".into()];
        out.push(Spec {
            name: "hs-strict",
            verifier: JwtVerifier::compile(&cfg, &[], None).expect("hs verifier"),
            hmac: true,
            trusted: &[],
            algorithms: &["HS256"],
            audiences: &[],
            max_age: Some(3600),
            required: &["tenant"],
            kept: &[],
            cached: false,
        });
        let cfg = config(
            JwtKeySource::PublicKeyPem(fixture("rsa_public.pem")),
            vec![Algorithm::RS256, Algorithm::PS256],
        );
        out.push(Spec {
            name: "rsa-pem",
            verifier: JwtVerifier::compile(&cfg, &[], None).expect("rsa verifier"),
            hmac: false,
            trusted: &[Signer::Rsa],
            algorithms: &["RS256", "PS256"],
            audiences: &[],
            max_age: None,
            required: &[],
            kept: &[],
            cached: false,
        });
        let jwks = String::from_utf8(fixture("jwks.json")).expect("jwks text");
        let mut cfg = config(
            JwtKeySource::JwksJson(jwks),
            vec![Algorithm::RS256, Algorithm::ES256],
        );
        cfg.cache_entries = 64;
        out.push(Spec {
            name: "jwks",
            verifier: JwtVerifier::compile(&cfg, &[], None).expect("jwks verifier"),
            hmac: false,
            trusted: &[Signer::Rsa, Signer::Ec],
            algorithms: &["RS256", "ES256"],
            audiences: &[],
            max_age: None,
            required: &[],
            kept: &[],
            cached: true,
        });
        let cfg = config(
            JwtKeySource::PublicKeyPem(fixture("ed_public.pem")),
            vec![Algorithm::EdDSA],
        );
        out.push(Spec {
            name: "ed-pem",
            verifier: JwtVerifier::compile(&cfg, &[], None).expect("ed verifier"),
            hmac: false,
            trusted: &[Signer::Ed],
            algorithms: &["EdDSA"],
            audiences: &[],
            max_age: None,
            required: &[],
            kept: &[],
            cached: false,
        });
        out
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn hmac_sign(alg: &str, key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
        let algorithm = match alg {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            _ => return None,
        };
        Some(
            hmac::sign(&hmac::Key::new(algorithm, key), message)
                .as_ref()
                .to_vec(),
        )
    }

    fn random_json(rng: &mut StdRng, depth: u32) -> Value {
        match rng.gen_range(0..if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.gen()),
            2 => json!(rng.gen_range(-1_000_000i64..1_000_000)),
            3 => json!(rng.gen::<f64>() * 1e12),
            4 => Value::String(atoms_text(
                rng,
                &["a", "b", " ", "\"", "\\", "é", ":", "\u{0}"],
                6,
            )),
            5 => pick(rng, &[json!(u64::MAX), json!(i64::MIN), json!(0.5), json!("")]).clone(),
            6 => Value::Array(
                (0..rng.gen_range(0..4))
                    .map(|_| random_json(rng, depth - 1))
                    .collect(),
            ),
            _ => {
                let mut m = Map::new();
                for _ in 0..rng.gen_range(0..4) {
                    let k = pick(rng, &["a", "exp", "sub", "iss", "", "x"]).to_string();
                    m.insert(k, random_json(rng, depth - 1));
                }
                Value::Object(m)
            }
        }
    }

    /// Numbers at and beyond the edges of every integer type and of `f64` (serde_json keeps
    /// `1e400` as written, `arbitrary_precision`).
    #[rustfmt::skip]
    const EXTREME_NUMBERS: &[&str] = &[
        "-1", "0", "9223372036854775807", "18446744073709551615", "-9223372036854775808", "1e400", "-1e400",
        "1e-400", "1.0e10", "99999999999999999999999",
    ];

    fn time_claim(rng: &mut StdRng, good: f64) -> Value {
        let now = now_secs().floor();
        match rng.gen_range(0..14) {
            0..=5 => json!(good as i64),
            6 => json!(now as i64 + rng.gen_range(-200_000i64..200_000)),
            7 => json!(good + rng.gen_range(-5.0..5.0)),
            8 => json!(format!("{}", good as i64)),
            9 => pick(rng, &[Value::Null, json!(true), json!([1]), json!({})]).clone(),
            10 | 11 => pick_json(rng, EXTREME_NUMBERS),
            12 => json!(now - LEEWAY as f64 - 5.0),
            _ => json!(now + LEEWAY as f64 + 5.0),
        }
    }

    fn claims(rng: &mut StdRng) -> String {
        let now = now_secs().floor();
        let mut m = Map::new();
        if rng.gen_bool(0.9) {
            m.insert("exp".into(), time_claim(rng, now + 600.0));
        }
        if rng.gen_bool(0.3) {
            m.insert("nbf".into(), time_claim(rng, now - 60.0));
        }
        if rng.gen_bool(0.6) {
            m.insert("iat".into(), time_claim(rng, now - 10.0));
        }
        if rng.gen_bool(0.93) {
            let iss = match rng.gen_range(0..12) {
                0..=6 => json!(ISSUER),
                7 => json!("https://evil.test"),
                8 => json!(format!("{ISSUER} ")),
                9 => json!([ISSUER]),
                10 => json!("HTTPS://ISSUER.TEST"),
                _ => random_json(rng, 1),
            };
            m.insert("iss".into(), iss);
        }
        if rng.gen_bool(0.7) {
            let aud = match rng.gen_range(0..10) {
                0..=3 => json!("api"),
                4 => json!("other-api"),
                5 => json!(["x", "api"]),
                6 => json!(["x"]),
                7 => json!([]),
                8 => json!("API"),
                _ => random_json(rng, 1),
            };
            m.insert("aud".into(), aud);
        }
        if rng.gen_bool(0.93) {
            let sub = match rng.gen_range(0..10) {
                0..=5 => json!("alice"),
                6 => json!(""),
                7 => json!(atoms_text(rng, &["a", " ", "é", "\n", "\u{0}"], 5)),
                _ => random_json(rng, 1),
            };
            m.insert("sub".into(), sub);
        }
        for name in ["scope", "scp", "roles"] {
            if rng.gen_bool(0.3) {
                let v = match rng.gen_range(0..5) {
                    0 => json!("orders:read orders:write"),
                    1 => json!(["a", "b c", "\"q\"", "x\\y", ""]),
                    2 => json!(atoms_text(rng, &["a", " ", "\t", "\"", "é", "\\", ":"], 8)),
                    _ => random_json(rng, 2),
                };
                m.insert(name.into(), v);
            }
        }
        for name in ["tenant", "plan"] {
            if rng.gen_bool(0.5) {
                let v = if rng.gen_bool(0.6) {
                    json!("acme")
                } else {
                    random_json(rng, 2)
                };
                m.insert(name.into(), v);
            }
        }
        for _ in 0..rng.gen_range(0..3) {
            let k = atoms_text(rng, &["x", "exp", "_", "é"], 3);
            m.insert(k, random_json(rng, 3));
        }
        let mut text = serde_json::to_string(&Value::Object(m)).unwrap_or_default();
        if rng.gen_bool(0.2) {
            text = raw_tweak(rng, text, &["exp", "sub", "iss", "aud", "nbf", "iat", "tenant"]);
        }
        text
    }

    /// Text-level tweaks serde's maps cannot express: duplicate keys (the last one wins),
    /// escaped key names, other top-level types, truncation.
    fn raw_tweak(rng: &mut StdRng, mut text: String, keys: &[&str]) -> String {
        let key = *pick(rng, keys);
        match rng.gen_range(0..7) {
            0 => {
                let dup = format!(
                    "\"{key}\":{},",
                    serde_json::to_string(&random_json(rng, 1)).unwrap_or_default()
                );
                if text.starts_with('{') {
                    text.insert_str(1, &dup);
                    if text.ends_with(",}") {
                        text = text.replace(",}", "}");
                    }
                }
            }
            1 => {
                if text.ends_with('}') && text.len() > 2 {
                    text.pop();
                    let v = serde_json::to_string(&random_json(rng, 1)).unwrap_or_default();
                    text.push_str(&format!(",\"{key}\":{v}}}"));
                }
            }
            2 => {
                let escaped: String = key.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
                text = text.replacen(&format!("\"{key}\""), &format!("\"{escaped}\""), 1);
            }
            3 => text = pick(rng, &["[]", "null", "1", "\"x\"", "", "{", "{}", "{\"a\":1}x"]).to_string(),
            4 => {
                let cut = rng.gen_range(0..=text.len());
                while !text.is_char_boundary(cut.min(text.len())) {
                    text.pop();
                }
                text.truncate(cut.min(text.len()));
            }
            5 => text = format!(" \n{text}\t"),
            _ => text = format!("\u{feff}{text}"),
        }
        text
    }

    #[rustfmt::skip]
    const OTHER_ALGS: &[&str] = &["none", "None", "HS256", "RS256", "ES256", "EdDSA", "PS256", "HS512", "", "hs256"];

    fn header(rng: &mut StdRng, alg: &str, kid: Option<&str>) -> String {
        let mut m = Map::new();
        let alg_value = match rng.gen_range(0..100) {
            0..=87 => json!(alg),
            88..=97 => json!(*pick(rng, OTHER_ALGS)),
            _ => pick_json(rng, &["5", "null", "[\"HS256\"]"]),
        };
        m.insert("alg".into(), alg_value);
        if rng.gen_bool(0.6) {
            m.insert("typ".into(), json!("JWT"));
        }
        if let Some(kid) = kid {
            m.insert("kid".into(), json!(kid));
        } else if rng.gen_bool(0.2) {
            let kid = match rng.gen_range(0..6) {
                0..=3 => json!(*pick(rng, &["k1", "k2", "k3", ""])),
                4 => json!(5),
                _ => Value::Null,
            };
            m.insert("kid".into(), kid);
        }
        if rng.gen_bool(0.05) {
            m.insert(
                "crit".into(),
                pick(rng, &[json!(["b64"]), json!([]), Value::Null, json!(["exp"])]).clone(),
            );
        }
        if rng.gen_bool(0.05) {
            m.insert(
                "b64".into(),
                pick(rng, &[json!(false), json!(true), json!("false"), Value::Null]).clone(),
            );
        }
        for name in ["jku", "x5u", "jwk", "x5c", "cty"] {
            if rng.gen_bool(0.02) {
                m.insert(name.into(), random_json(rng, 2));
            }
        }
        let mut text = serde_json::to_string(&Value::Object(m)).unwrap_or_default();
        if rng.gen_bool(0.08) {
            text = raw_tweak(rng, text, &["alg", "kid", "crit", "b64", "typ"]);
        }
        text
    }

    fn segment(rng: &mut StdRng, json: &str) -> String {
        match rng.gen_range(0..30) {
            0 => STANDARD.encode(json),
            1 => URL_SAFE.encode(json),
            2 => format!("{}=", b64(json.as_bytes())),
            _ => b64(json.as_bytes()),
        }
    }

    fn sign_asym(rng: &mut StdRng, keys: &Keys) -> (String, Signer) {
        let (alg, name, key, signer, kid) = match rng.gen_range(0..4) {
            0 => (Algorithm::PS256, "PS256", &keys.rsa, Signer::Rsa, None),
            1 => (Algorithm::ES256, "ES256", &keys.ec, Signer::Ec, Some("k2")),
            2 => (Algorithm::EdDSA, "EdDSA", &keys.ed, Signer::Ed, None),
            _ => (Algorithm::RS256, "RS256", &keys.rsa, Signer::Rsa, Some("k1")),
        };
        let kid = if rng.gen_bool(0.8) { kid } else { None };
        let message = format!(
            "{}.{}",
            b64(header(rng, name, kid).as_bytes()),
            b64(claims(rng).as_bytes())
        );
        match jsonwebtoken::crypto::sign(message.as_bytes(), key, alg) {
            Ok(sig) => (format!("{message}.{sig}"), signer),
            Err(_) => (message, Signer::Nobody),
        }
    }

    fn sign_hmac(rng: &mut StdRng, key: &[u8], alg: &str, kid: Option<&str>) -> String {
        let (h, c) = (header(rng, alg, kid), claims(rng));
        let message = format!("{}.{}", segment(rng, &h), segment(rng, &c));
        let sig = hmac_sign(alg, key, message.as_bytes()).unwrap_or_default();
        format!("{message}.{}", b64(&sig))
    }

    #[rustfmt::skip]
    const TOKEN_CHARS: &[&str] = &[
        "A", "b", "0", "9", "-", "_", "+", "/", "=", ".", ".", "eyJ", "eyJhbGciOiJIUzI1NiJ9", " ", "é", "%",
        "\\", "\"",
    ];

    pub fn generate(rng: &mut StdRng, keys: &Keys) -> Token {
        let (token, signer) = match rng.gen_range(0..100) {
            0..=9 => {
                if rng.gen_bool(0.5) {
                    (atoms_text(rng, TOKEN_CHARS, 80), Signer::Nobody)
                } else {
                    (lossy(&random_bytes(rng, 120)), Signer::Nobody)
                }
            }
            10..=34 => {
                let alg = *pick(rng, &["HS256", "RS256", "ES256", "EdDSA", "none", "HS384"]);
                let sig = match rng.gen_range(0..5) {
                    0 => String::new(),
                    1 => atoms_text(rng, TOKEN_CHARS, 20),
                    _ => b64(&random_bytes(rng, 300)),
                };
                let (h, c) = (header(rng, alg, None), claims(rng));
                let (h, c) = (segment(rng, &h), segment(rng, &c));
                let mut t = format!("{h}.{c}.{sig}");
                if rng.gen_bool(0.1) {
                    t.push_str(pick_str(rng, &[".", ".x", ".."]));
                }
                (t, Signer::Nobody)
            }
            35..=69 => {
                let alg = *pick(rng, &["HS256", "HS256", "HS256", "HS384", "HS512"]);
                (sign_hmac(rng, SECRET, alg, None), Signer::Nobody)
            }
            70..=79 => sign_asym(rng, keys),
            80..=82 => {
                // A key the gateway does not trust, named like a trusted one.
                let message = format!(
                    "{}.{}",
                    b64(header(rng, "RS256", Some("k1")).as_bytes()),
                    b64(claims(rng).as_bytes())
                );
                let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &keys.attacker, Algorithm::RS256)
                    .unwrap_or_default();
                (format!("{message}.{sig}"), Signer::Nobody)
            }
            83..=85 => {
                // Algorithm confusion: HMAC keyed with the RSA public key's PEM text.
                (
                    sign_hmac(rng, &keys.rsa_public_pem, "HS256", Some("k1")),
                    Signer::Nobody,
                )
            }
            86..=88 => {
                let h = header(rng, "none", None);
                let tail = pick(rng, &["", "", ".", "x"]).to_string();
                (
                    format!("{}.{}.{tail}", b64(h.as_bytes()), b64(claims(rng).as_bytes())),
                    Signer::Nobody,
                )
            }
            _ => {
                let (t, signer) = if rng.gen_bool(0.7) {
                    (sign_hmac(rng, SECRET, "HS256", None), Signer::Nobody)
                } else {
                    sign_asym(rng, keys)
                };
                let mut bytes = t.clone().into_bytes();
                let dict: &[&[u8]] = &[b".", b"=", b"A", b"_", b"-", b"eyJ", b" "];
                let rounds = rng.gen_range(1..3);
                mutate_bytes(rng, &mut bytes, dict, rounds);
                let mutated = lossy(&bytes);
                if mutated == t {
                    (t, signer)
                } else {
                    return Token {
                        token: mutated,
                        signer,
                        original: t,
                    };
                }
            }
        };
        Token {
            original: token.clone(),
            token,
            signer,
        }
    }

    fn decode_json(segment: &str) -> Map<String, Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .expect("an accepted token's segment is not base64url");
        serde_json::from_slice(&bytes).expect("an accepted token's segment is not a JSON object")
    }

    fn number(claims: &Map<String, Value>, name: &str) -> Option<f64> {
        claims.get(name).map(|v| {
            v.as_f64()
                .unwrap_or_else(|| panic!("accepted a non-numeric `{name}`: {v}"))
        })
    }

    /// An accepted token must satisfy everything the module documents.
    fn oracle(spec: &Spec, input: &Token, id: &portcullis::auth::Identity, before: f64) {
        let token = &input.token;
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(
            parts.len(),
            3,
            "[{}] accepted a token without three segments",
            spec.name
        );
        let header = decode_json(parts[0]);
        let claims = decode_json(parts[1]);
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .expect("accepted a token without a string alg");
        assert!(
            spec.algorithms.contains(&alg),
            "[{}] accepted alg {alg}",
            spec.name
        );
        assert!(
            header.get("crit").is_none_or(Value::is_null),
            "[{}] accepted a critical header",
            spec.name
        );
        assert!(
            header.get("b64").is_none_or(|b| b == &Value::Bool(true)),
            "[{}] accepted b64",
            spec.name
        );
        let message = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD
            .decode(parts[2])
            .expect("accepted a signature that is not base64url");
        if spec.hmac {
            let expected = hmac_sign(alg, SECRET, message.as_bytes()).expect("HMAC alg");
            assert_eq!(signature, expected, "[{}] accepted a wrong HMAC", spec.name);
        } else {
            assert!(
                spec.trusted.contains(&input.signer),
                "[{}] accepted a token no trusted key signed",
                spec.name
            );
            let original: Vec<&str> = input.original.split('.').collect();
            assert_eq!(
                message,
                format!("{}.{}", original[0], original[1]),
                "[{}] accepted an altered signing input",
                spec.name
            );
            assert_eq!(
                Some(signature),
                original.get(2).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()),
                "[{}] accepted an altered signature",
                spec.name
            );
        }
        let after = now_secs();
        let leeway = LEEWAY as f64;
        let exp = number(&claims, "exp").expect("accepted a token without exp");
        assert!(
            exp >= before - leeway - 1.0,
            "[{}] accepted an expired token",
            spec.name
        );
        if let Some(nbf) = number(&claims, "nbf") {
            assert!(
                nbf <= after + leeway + 1.0,
                "[{}] accepted a future nbf",
                spec.name
            );
        }
        let iat = number(&claims, "iat");
        if let Some(iat) = iat {
            assert!(
                iat <= after + leeway + 1.0,
                "[{}] accepted a future iat",
                spec.name
            );
        }
        if let Some(max_age) = spec.max_age {
            let iat = iat.expect("max_age without iat");
            assert!(after - iat <= (max_age + LEEWAY) as f64 + 1.0, "too old");
        }
        assert_eq!(
            claims.get("iss").and_then(Value::as_str),
            Some(ISSUER),
            "[{}] accepted issuer {:?}",
            spec.name,
            claims.get("iss")
        );
        match claims.get("aud") {
            None => assert!(spec.audiences.is_empty(), "[{}] accepted no audience", spec.name),
            Some(Value::String(a)) => assert!(
                spec.audiences.is_empty() || spec.audiences.contains(&a.as_str()),
                "[{}] accepted audience {a}",
                spec.name
            ),
            Some(Value::Array(list)) => {
                assert!(
                    list.iter().all(Value::is_string),
                    "[{}] non-string audience",
                    spec.name
                );
                assert!(
                    spec.audiences.is_empty()
                        || list
                            .iter()
                            .any(|a| a.as_str().is_some_and(|a| spec.audiences.contains(&a))),
                    "[{}] accepted audiences {list:?}",
                    spec.name
                );
            }
            Some(other) => panic!("[{}] accepted audience {other}", spec.name),
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .expect("accepted without a string sub");
        assert!(!sub.is_empty(), "[{}] accepted an empty sub", spec.name);
        assert_eq!(id.consumer, sub);
        for claim in spec.required {
            assert!(
                claims.contains_key(*claim),
                "[{}] accepted without {claim}",
                spec.name
            );
        }
        for word in id.scopes.iter().chain(id.roles.iter()) {
            assert!(is_scope_token(word), "kept {word:?} as a scope or role");
        }
        for (k, _) in &id.claims {
            assert!(spec.kept.contains(&k.as_str()), "kept claim {k}");
        }
    }

    pub fn check(specs: &[Spec], input: &Token) {
        for spec in specs {
            let before = now_secs();
            let result = spec.verifier.verify(&input.token);
            if let Ok(id) = &result {
                note(spec.name);
                oracle(spec, input, id, before);
                if spec.cached {
                    let again = spec.verifier.verify(&input.token).expect("cached token refused");
                    assert_eq!(again.consumer, id.consumer);
                }
            }
        }
    }
}

#[test]
fn fuzz_jwt() {
    let keys = jwt_target::keys();
    let specs = jwt_target::verifiers();
    fuzz(
        "jwt",
        |rng| jwt_target::generate(rng, &keys),
        |input| jwt_target::check(&specs, input),
    );
}

// ---------------------------------------------------------------------------------------------
// Target `config`: the YAML configuration decoder.
// ---------------------------------------------------------------------------------------------

mod config_target {
    use super::*;
    use portcullis::config::yaml::{self, Node};

    /// The repository's example configuration and every YAML example in the documentation.
    pub fn seeds() -> Vec<String> {
        let mut seeds = Vec::new();
        for file in [
            "conf/portcullis.yaml",
            "conf/portcullis.systemd.yaml",
            "conf/keys.yaml",
        ] {
            if let Ok(text) = std::fs::read_to_string(manifest_path(file)) {
                seeds.push(text);
            }
        }
        for doc in ["docs/config.md", "README.md"] {
            let Ok(text) = std::fs::read_to_string(manifest_path(doc)) else {
                continue;
            };
            let mut block: Option<String> = None;
            for line in text.lines() {
                match &mut block {
                    None if line.trim_start().starts_with("```yaml") => block = Some(String::new()),
                    Some(b) if line.trim_start().starts_with("```") => {
                        seeds.push(std::mem::take(b));
                        block = None;
                    }
                    Some(b) => {
                        b.push_str(line);
                        b.push('\n');
                    }
                    None => {}
                }
            }
        }
        assert!(!seeds.is_empty(), "no example configurations found");
        seeds
    }

    /// Keys (`name:`) that appear in the seeds.
    pub fn vocabulary(seeds: &[String]) -> Vec<String> {
        let mut words: Vec<String> = seeds
            .iter()
            .flat_map(|s| s.lines())
            .filter_map(|l| {
                let t = l.trim_start().trim_start_matches("- ");
                let (k, _) = t.split_once(':')?;
                (!k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                    .then(|| k.to_string())
            })
            .collect();
        words.sort();
        words.dedup();
        words
    }

    #[rustfmt::skip]
    const VALUES: &[&str] = &[
        "", "~", "null", "0", "-1", "1", "2", "65535", "65536", "4294967296", "18446744073709551616", "1e400",
        "-0", "0x1F", "0o7", ".inf", ".nan", "true", "false", "yes", "1s", "0s", "-1s", "1ms", "0ms", "500ms",
        "99999999999999h", "1.5s", "1d", "10%", "101", "0.5", "'quoted'", "\"dq\"", "\"\\u0000\"", "\"\\t\"",
        "[]", "{}", "[a, b]", "{a: 1}", "[[]]", "&x 1", "*x", "!!str 1", "!!binary aGk=", "|", ">-",
        "127.0.0.1:0", "127.0.0.1:9001", "[::1]:80", "0.0.0.0:8080", "127.0.0.1:99999", "localhost:80", "/",
        "/path", "//", "/..", "/%2e%2e/", "/users/{path.2}", "{query.x}", "{user.service}", "{", "}",
        "*.example.com", "*", "é", "\u{feff}", "2026-02-30", "2026-01-01", "9999-12-31", "GET", "POST",
        "HEAD", "header:x-a", "cookie:s", "query:k", "ip", "consumer", "redis://127.0.0.1:1", "redis://",
        "1kb", "1KiB", "10mb", "1gb", "-1kb", "HS256", "none", "RS256", "drop", "reject", "allow", "root",
        "error", "body", "local", "redis", "round_robin", "hash", "least_conn", "x-Ünicode", "a\tb",
        "'it''s'", "- a", "? a", ": a", "#", "%", "@", "`",
    ];

    fn random_scalar(rng: &mut StdRng, vocab: &[String]) -> String {
        match rng.gen_range(0..4) {
            0 => pick(rng, vocab).clone(),
            1 => atoms_text(rng, &["a", "-", "_", ".", ":", "/", "1", " ", "é"], 6),
            _ => pick(rng, VALUES).to_string(),
        }
    }

    /// YAML-ish text: nested mappings and lists in block or flow style, with anchors.
    fn random_yaml(rng: &mut StdRng, vocab: &[String], depth: usize, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        for _ in 0..rng.gen_range(1..5) {
            let key = pick(rng, vocab).clone();
            match rng.gen_range(0..if depth == 0 { 3 } else { 6 }) {
                0..=2 => out.push_str(&format!("{pad}{key}: {}\n", random_scalar(rng, vocab))),
                3 => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    random_yaml(rng, vocab, depth - 1, indent + 2, out);
                }
                4 => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    for _ in 0..rng.gen_range(0..4) {
                        if rng.gen_bool(0.5) {
                            out.push_str(&format!("{pad}  - {}\n", random_scalar(rng, vocab)));
                        } else {
                            let k = pick(rng, vocab).clone();
                            out.push_str(&format!("{pad}  - {k}: {}\n", random_scalar(rng, vocab)));
                        }
                    }
                }
                _ => {
                    let items: Vec<String> = (0..rng.gen_range(0..4))
                        .map(|_| format!("{}: {}", pick(rng, vocab), random_scalar(rng, vocab)))
                        .collect();
                    out.push_str(&format!("{pad}{key}: {{ {} }}\n", items.join(", ")));
                }
            }
        }
    }

    fn alias_bomb(rng: &mut StdRng) -> String {
        let levels = rng.gen_range(2..12);
        let width = rng.gen_range(2..10);
        let mut s = String::from("a0: &a0 [x, x]\n");
        for i in 1..levels {
            let items = vec![format!("*a{}", i - 1); width].join(", ");
            s.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        s
    }

    fn nesting(rng: &mut StdRng) -> String {
        let depth = rng.gen_range(1..2000);
        let (open, close) = *pick(rng, &[("[", "]"), ("{a: ", "}"), ("- ", "")]);
        if open == "- " {
            (0..depth.min(200))
                .map(|i| format!("{}- ", " ".repeat(i * 2)))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            format!("{}x{}", open.repeat(depth), close.repeat(depth))
        }
    }

    pub fn generate(rng: &mut StdRng, seeds: &[String], vocab: &[String]) -> String {
        match rng.gen_range(0..100) {
            0..=69 => {
                // Half the time the full example (its relative keys_file resolves), else any seed.
                let seed = if rng.gen_bool(0.5) {
                    &seeds[0]
                } else {
                    pick(rng, seeds)
                };
                mutate(rng, seed, seeds, vocab)
            }
            70..=84 => {
                let mut s = String::new();
                random_yaml(rng, vocab, 3, 0, &mut s);
                s
            }
            85..=89 => alias_bomb(rng),
            90..=92 => nesting(rng),
            93..=95 => pick(rng, seeds).clone(),
            _ => {
                let mut bytes = pick(rng, seeds).clone().into_bytes();
                let rounds = rng.gen_range(1..8);
                mutate_bytes(
                    rng,
                    &mut bytes,
                    &[b": ", b"- ", b"\n", b"  ", b"\t", b"&a ", b"*a", b"'", b"\""],
                    rounds,
                );
                lossy(&bytes)
            }
        }
    }

    fn mutate(rng: &mut StdRng, text: &str, seeds: &[String], vocab: &[String]) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for _ in 0..rng.gen_range(1..5) {
            if lines.is_empty() {
                lines.push(String::new());
            }
            let n = lines.len();
            let i = rng.gen_range(0..n);
            match rng.gen_range(0..12) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                2 => lines.swap(i, rng.gen_range(0..n)),
                3 => {
                    let l = lines.remove(i);
                    let to = rng.gen_range(0..=lines.len());
                    lines.insert(to, l);
                }
                4 => {
                    let l = &mut lines[i];
                    if rng.gen_bool(0.5) {
                        l.insert_str(0, pick_str(rng, &[" ", "  ", "\t", "    "]));
                    } else {
                        let strip = l.len() - l.trim_start().len();
                        l.drain(..strip.min(rng.gen_range(1..3)));
                    }
                }
                5 => {
                    let other: Vec<&str> = pick(rng, seeds).lines().collect();
                    if !other.is_empty() {
                        let from = rng.gen_range(0..other.len());
                        let len = rng.gen_range(1..=(other.len() - from).min(8));
                        for (k, l) in other[from..from + len].iter().enumerate() {
                            lines.insert(i + k, l.to_string());
                        }
                    }
                }
                6 => {
                    let l = &mut lines[i];
                    if let Some(colon) = l.find(": ") {
                        l.truncate(colon + 2);
                        l.push_str(&random_scalar(rng, vocab));
                    } else {
                        l.push_str(": ");
                        l.push_str(pick_str(rng, VALUES));
                    }
                }
                7 => {
                    let l = &mut lines[i];
                    if let Some(colon) = l.find(':') {
                        let indent = l.len() - l.trim_start().len();
                        let rest = l[colon..].to_string();
                        *l = format!("{}{}{rest}", " ".repeat(indent), pick(rng, vocab));
                    }
                }
                8 => {
                    let mut chars: Vec<char> = lines[i].chars().collect();
                    let at = rng.gen_range(0..=chars.len());
                    match rng.gen_range(0..4) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 if at < chars.len() => chars.insert(at, chars[at]),
                        2 if at + 1 < chars.len() => chars.swap(at, at + 1),
                        _ => {
                            let token = pick(
                                rng,
                                &[
                                    ":", "- ", "{", "}", "[", "]", ",", "&a ", "*a", "'", "\"", "#", "\t",
                                    "|", ">", "!", "%", "@", "?", "é",
                                ],
                            );
                            for (k, c) in token.chars().enumerate() {
                                chars.insert(at + k, c);
                            }
                        }
                    }
                    lines[i] = chars.into_iter().collect();
                }
                9 => lines.truncate(i),
                10 => {
                    let mut s = String::new();
                    let indent = rng.gen_range(0..3) * 2;
                    random_yaml(rng, vocab, 2, indent, &mut s);
                    lines.splice(i..i, s.lines().map(str::to_string));
                }
                _ => {
                    let other: Vec<&str> = pick(rng, seeds).lines().collect();
                    let len = rng.gen_range(0..=(n - i).min(6));
                    if !other.is_empty() {
                        let from = rng.gen_range(0..other.len());
                        let take = rng.gen_range(0..=(other.len() - from).min(6));
                        lines.splice(i..i + len, other[from..from + take].iter().map(|l| l.to_string()));
                    }
                }
            }
        }
        let eol = if rng.gen_bool(0.05) { "\r\n" } else { "\n" };
        lines.join(eol)
    }

    /// Whether some scalar is a `HOST:PORT` whose host is a name: the decoder resolves target
    /// addresses, and a fuzz run must not send DNS queries.
    fn needs_dns(node: &Node) -> bool {
        match node {
            Node::Scalar { value, .. } => value.rsplit_once(':').is_some_and(|(host, port)| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                !host.is_empty()
                    && port.parse::<u16>().is_ok()
                    && host.parse::<std::net::IpAddr>().is_err()
                    && host != "localhost"
            }),
            Node::Null { .. } => false,
            Node::Seq { items, .. } => items.iter().any(needs_dns),
            Node::Map { entries, .. } => entries.iter().any(|(k, v)| needs_dns(k) || needs_dns(v)),
        }
    }

    pub fn check(text: &str, file: &str, skipped: &Cell<u64>) {
        match yaml::parse(text) {
            Ok(root) if needs_dns(&root) => {
                skipped.set(skipped.get() + 1);
                return;
            }
            Ok(_) => {}
            Err(_) => note("syntax error"),
        }
        match portcullis::config::load_str(text, file) {
            Ok(_) => note("valid"),
            Err(problems) => {
                note("refused");
                assert!(!problems.is_empty(), "refused without a problem");
                let rendered = problems.to_string();
                assert!(
                    rendered.starts_with(file),
                    "rendering does not name the file: {rendered}"
                );
                // Lines as YAML counts them (`\r\n`, `\n` or a lone `\r` each end one).
                let lines = 1 + text.matches('\n').count() + text.matches('\r').count()
                    - text.matches("\r\n").count();
                for p in &problems.items {
                    assert!(!p.message.trim().is_empty(), "a problem without a message");
                    match p.pos {
                        Some(pos) => {
                            assert!(
                                pos.line >= 1 && pos.col >= 1,
                                "position {pos} for {:?}",
                                p.message
                            );
                            assert!(
                                pos.line <= lines + 1,
                                "line {} of {lines}: {:?}",
                                pos.line,
                                p.message
                            );
                            assert!(
                                rendered.contains(&format!("{file}:{pos}: ")),
                                "position not rendered"
                            );
                        }
                        // The only documented problems without a position: duplicate listeners.
                        None => assert!(
                            p.path.starts_with("server.listen") || p.path == "server.admin",
                            "a problem without a position: {} {}",
                            p.path,
                            p.message
                        ),
                    }
                }
            }
        }
    }
}

#[test]
fn fuzz_config() {
    let seeds = config_target::seeds();
    let vocab = config_target::vocabulary(&seeds);
    // In `conf/`, so the example's relative `keys_file: keys.yaml` is found.
    let file = manifest_path("conf/fuzz.yaml").display().to_string();
    let skipped = Cell::new(0u64);
    fuzz(
        "config",
        |rng| config_target::generate(rng, &seeds, &vocab),
        |text| config_target::check(text, &file, &skipped),
    );
    eprintln!(
        "fuzz config: {} inputs skipped (a target host name would need DNS)",
        skipped.get()
    );
}

// ---------------------------------------------------------------------------------------------
// Target `headers`: header values and query parameters read from requests and responses.
// ---------------------------------------------------------------------------------------------

mod headers_target {
    use super::*;
    use http::header::{ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
    use http::{HeaderMap, HeaderName, HeaderValue};
    use pingora::http::{RequestHeader, ResponseHeader};
    use portcullis::auth::credentials::{self, Found as Cred};
    use portcullis::config::{is_version_name, CredentialSource, MediaPattern};
    use portcullis::percent;
    use portcullis::transform::body;
    use portcullis::versions::sources::{self, Found};

    /// One input: which reader, the header values (or other texts) it gets, and a name.
    #[derive(Clone, Debug)]
    pub struct Input {
        kind: u8,
        values: Vec<Bytes>,
        name: String,
    }

    impl Shrink for Input {
        fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
            let values = self.values.shrink().map(move |values| Input {
                values,
                ..self.clone()
            });
            let names = self.name.shrink().map(move |name| Input { name, ..self.clone() });
            Box::new(values.chain(names))
        }
    }

    const KINDS: u8 = 11;

    #[rustfmt::skip]
    const CONTENT_TYPE_ATOMS: &[&str] = &[
        "application", "/", "json", "+", "*", "vnd.x", ";", " ", "charset=x", "é", "+json",
    ];

    #[rustfmt::skip]
    const MEDIA: &[&str] = &[
        "application/json", "application/vnd.acme.v2+json", "application/vnd.acme.v",
        "application/vnd.acme.v1", "application/vnd.acme.v2.1+json", "application/vnd.ACME.V3+json",
        "application/*+json", "application/problem+json", "text/plain", "*/*", "application/*",
        "application/vnd.acme.v+json", "application/vnd.acme.vé+json", "application", "/",
        "application/+json", "APPLICATION/JSON",
    ];
    #[rustfmt::skip]
    const PARAMS: &[&str] = &[
        ";version=2", "; version=v3", ";Version=\"1\"", ";version=", ";version=\"", ";q=0", ";q=0.5", ";q=1",
        ";q=1.0", ";q=NaN", ";q=inf", ";q=-1", ";q=", ";q=x", ";q=1e9", ";charset=utf-8", ";", ";=",
        ";version", " ; q = 0.9", ";version=2;version=3",
    ];
    const VERSIONS: &[&str] = &[
        "1", "2", "v2", "V3", "2.1", " 2 ", "", "v", "x", "1,2", "é", "v2 ", "\t1",
    ];
    const COOKIE_ATOMS: &[&str] = &[
        "session", "s", "=", "=", ";", "; ", " ", "a", "1", "\"", ",", "session=", "Session", "%20", "é",
        "\t",
    ];
    #[rustfmt::skip]
    const QUERY_ATOMS: &[&str] = &[
        "&", "&", "=", "version", "Version", "vers%69on", "version[]", "version%5B%5D", "api_key", "API_KEY",
        "api%5Fkey", "api.key", "api+key", "api[key", ";", "%", "%zz", "%2", "%00", "%3D", "%26", "+", "1",
        "v2", "a", "é", "%C3%A9", "%FF", "[", "]",
    ];

    fn value(rng: &mut StdRng, atoms: &[&str], max: usize) -> Vec<u8> {
        let mut v = atoms_text(rng, atoms, max).into_bytes();
        if rng.gen_bool(0.05) {
            let rounds = rng.gen_range(1..3);
            mutate_bytes(rng, &mut v, &[b";", b",", b"=", b"\x80", b"\xff"], rounds);
        }
        v
    }

    pub fn generate(rng: &mut StdRng) -> Input {
        let kind = rng.gen_range(0..KINDS);
        let count = rng.gen_range(0..4);
        let mut values = Vec::new();
        let mut name = String::new();
        match kind {
            // Accept (media-type versions).
            0 => {
                for _ in 0..count {
                    let ranges: Vec<String> = (0..rng.gen_range(1..4))
                        .map(|_| {
                            let mut r = pick(rng, MEDIA).to_string();
                            for _ in 0..rng.gen_range(0..3) {
                                r.push_str(pick_str(rng, PARAMS));
                            }
                            r
                        })
                        .collect();
                    let mut v = ranges.join(*pick(rng, &[",", ", ", " ,", ",,"])).into_bytes();
                    if rng.gen_bool(0.05) {
                        mutate_bytes(rng, &mut v, &[b";", b",", b"=", b"+", b"/"], 2);
                    }
                    values.push(v);
                }
                name = pick(rng, &["vnd.acme.v", "vnd.acme.", "", "vnd"]).to_string();
            }
            // Accept-Version, path versions, query versions.
            1 => {
                for _ in 0..count {
                    values.push(value(rng, VERSIONS, 3));
                }
            }
            2 => values.push(value(
                rng,
                &["/v", "/", "2", "v2", "1.0", "x", "/users", "-", "_", "é", "."],
                6,
            )),
            3 | 7 => {
                values.push(value(rng, QUERY_ATOMS, 12));
                name = pick(rng, &["version", "api_key", "token"]).to_string();
            }
            // Authorization and another credential header.
            4 | 5 => {
                for _ in 0..count {
                    let scheme = pick(
                        rng,
                        &[
                            "Bearer ", "bearer ", "BEARER  ", "Basic ", "Bearer", "", " Bearer ",
                        ],
                    );
                    let mut v = scheme.as_bytes().to_vec();
                    v.extend(value(
                        rng,
                        &["abc", ".", "-", "_", "~", "+", "/", "=", " ", "\t", "é", "%", ","],
                        8,
                    ));
                    values.push(v);
                }
            }
            // Cookie.
            6 => {
                for _ in 0..count {
                    values.push(value(rng, COOKIE_ATOMS, 12));
                }
                name = pick(rng, &["session", "s", "", "a"]).to_string();
            }
            // Content-Type against media patterns.
            8 => {
                values.push(value(rng, CONTENT_TYPE_ATOMS, 8));
                name = atoms_text(rng, &["application", "/", "*", "+", "json", "", "é", "x"], 4);
            }
            // Content-Encoding and Content-Length.
            9 => {
                for _ in 0..count {
                    values.push(value(
                        rng,
                        &[
                            "gzip", "x-gzip", "br", "identity", ",", " ", "GZIP", "deflate", "é", "",
                        ],
                        4,
                    ));
                }
                name = atoms_text(rng, &["1", "0", " ", "-", "99999999999999999999", "+", "x"], 3);
            }
            // Percent-encoding.
            _ => {
                values.push(value(rng, QUERY_ATOMS, 10));
                name = atoms_text(rng, &["a", " ", "+", ".", "[", "%", "é", "_", "\u{0}", "😀"], 8);
            }
        }
        let values = values.into_iter().map(Bytes).collect();
        Input { kind, values, name }
    }

    fn header_map<B: AsRef<[u8]>>(name: &HeaderName, values: &[B]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_bytes(v.as_ref()) {
                map.append(name.clone(), v);
            }
        }
        map
    }

    fn request<B: AsRef<[u8]>>(target: &[u8], name: &HeaderName, values: &[B]) -> Option<RequestHeader> {
        let mut req = RequestHeader::build("GET", target, None).ok()?;
        for v in values {
            if let Ok(v) = HeaderValue::from_bytes(v.as_ref()) {
                req.append_header(name.clone(), v).ok()?;
            }
        }
        Some(req)
    }

    fn assert_credential(found: &Cred) {
        if let Cred::One(v) = found {
            assert!(!v.is_empty(), "an empty credential");
            assert!(
                v.len() <= credentials::MAX_CREDENTIAL_BYTES,
                "an oversized credential"
            );
            assert!(
                !v.bytes().any(|b| b < 0x20 || b == 0x7f),
                "a credential with control bytes"
            );
        }
    }

    fn reversed(values: &[Bytes]) -> Vec<Bytes> {
        values.iter().rev().cloned().collect()
    }

    #[rustfmt::skip]
    const KIND_NAMES: [&str; KINDS as usize] = [
        "accept", "accept-version", "path-version", "query-version", "authorization", "api-key-header",
        "cookie", "query-credential", "content-type", "content-encoding", "percent",
    ];

    pub fn check(input: &Input) {
        note(KIND_NAMES[usize::from(input.kind)]);
        let values = &input.values;
        let text = values.first().map(|v| lossy(v)).unwrap_or_default();
        match input.kind {
            0 => {
                let headers = header_map(&ACCEPT, values);
                let found = sources::media_type(&headers, &input.name);
                if let Found::One(v) = &found {
                    note("accept version found");
                    assert!(
                        !v.contains(',') && !v.contains(';'),
                        "version {v:?} spans a separator"
                    );
                }
                assert_eq!(
                    sources::media_type(&headers, &input.name),
                    found,
                    "not deterministic"
                );
                // Negotiation by `q` does not depend on the order of the ranges (a finding
                // once: `q=NaN` compared as neither higher nor equal, so the last such range won;
                // malformed qvalues now refuse their range).
                let ranges: Vec<Vec<u8>> = values
                    .iter()
                    .rev()
                    .map(|v| v.split(|&b| b == b',').rev().collect::<Vec<_>>().join(&b','))
                    .collect();
                assert_eq!(
                    sources::media_type(&header_map(&ACCEPT, &ranges), &input.name),
                    found,
                    "Accept negotiation depends on the order of the ranges"
                );
            }
            1 => {
                let name = HeaderName::from_static("accept-version");
                let found = sources::header(&header_map(&name, values), &name);
                if let Found::One(v) = &found {
                    assert!(
                        !v.is_empty() && v.trim() == v && !v.contains(','),
                        "version {v:?}"
                    );
                }
                let other = sources::header(&header_map(&name, &reversed(values)), &name);
                assert_eq!(found, other, "Accept-Version depends on the order of its values");
            }
            2 => {
                if let Some((version, rest)) = sources::path_version(&text) {
                    assert!(is_version_name(version), "{version:?}");
                    assert!(rest.starts_with('/'), "{rest:?}");
                    let joined = format!("/v{version}{rest}");
                    assert!(
                        joined == text || (rest == "/" && format!("/v{version}") == text),
                        "{text:?}"
                    );
                }
            }
            3 => {
                let _ = sources::query(Some(&text), &input.name);
                let stripped = sources::strip_query(&text, &input.name);
                assert!(
                    !matches!(sources::query(Some(&stripped), &input.name), Found::One(_)),
                    "the parameter survives stripping: {stripped:?}"
                );
                assert_eq!(
                    sources::strip_query(&stripped, &input.name),
                    stripped,
                    "stripping twice"
                );
            }
            4 | 5 => {
                let name = if input.kind == 4 {
                    AUTHORIZATION
                } else {
                    HeaderName::from_static("x-api-key")
                };
                let source = CredentialSource::Header(name.clone());
                let Some(mut req) = request(b"/", &name, values) else {
                    return;
                };
                let found = credentials::read(&source, &req);
                assert_credential(&found);
                if let (Cred::One(token), true) = (&found, input.kind == 4) {
                    assert!(
                        token
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)),
                        "bearer token {token:?} outside token68"
                    );
                }
                if let Cred::One(v) = &found {
                    assert_eq!(v.trim(), v, "credential not trimmed");
                }
                credentials::strip_from_headers(&source, &mut req).expect("strip");
                assert_eq!(
                    credentials::read(&source, &req),
                    Cred::Absent,
                    "credential survives stripping"
                );
            }
            6 => {
                let source = CredentialSource::Cookie(input.name.clone());
                let Some(mut req) = request(b"/", &COOKIE, values) else {
                    return;
                };
                let found = credentials::read(&source, &req);
                assert_credential(&found);
                if matches!(found, Cred::One(_)) {
                    note("cookie found");
                }
                let others = |req: &RequestHeader| -> Vec<String> {
                    req.headers
                        .get_all(COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(';'))
                        .filter_map(|p| p.trim().split_once('='))
                        .filter(|(k, _)| *k != input.name)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect()
                };
                let before = others(&req);
                credentials::strip_from_headers(&source, &mut req).expect("strip cookie");
                assert_eq!(
                    credentials::read(&source, &req),
                    Cred::Absent,
                    "cookie survives stripping"
                );
                assert_eq!(others(&req), before, "stripping changed the other cookies");
            }
            7 => {
                let source = CredentialSource::Query(input.name.clone());
                let target = [
                    &b"/p?"[..],
                    values.first().map(|v| v.as_slice()).unwrap_or_default(),
                ]
                .concat();
                let Some(req) = request::<Bytes>(&target, &COOKIE, &[]) else {
                    return;
                };
                let found = credentials::read(&source, &req);
                assert_credential(&found);
                let query = req.uri.query().unwrap_or("").to_string();
                let stripped = credentials::strip_from_query(&query, std::slice::from_ref(&source));
                if let Some(req) = request::<Bytes>(format!("/p?{stripped}").as_bytes(), &COOKIE, &[]) {
                    assert!(
                        !matches!(credentials::read(&source, &req), Cred::One(_)),
                        "the credential survives stripping: {stripped:?}"
                    );
                }
            }
            8 => {
                let (top, suffix) = input.name.split_once('/').unwrap_or((&input.name, ""));
                let patterns = vec![
                    MediaPattern::Exact(input.name.clone()),
                    MediaPattern::Suffix {
                        top: top.to_string(),
                        suffix: suffix.to_string(),
                    },
                    MediaPattern::Exact("application/json".into()),
                    MediaPattern::Suffix {
                        top: "application".into(),
                        suffix: "json".into(),
                    },
                ];
                let media = text.split(';').next().unwrap_or("").trim().to_string();
                for p in &patterns {
                    if p.matches(&text) {
                        match p {
                            MediaPattern::Exact(m) => assert!(media.eq_ignore_ascii_case(m)),
                            MediaPattern::Suffix { top, suffix } => {
                                let lower = media.to_ascii_lowercase();
                                assert!(lower.ends_with(&format!("+{}", suffix.to_ascii_lowercase())));
                                assert!(lower.starts_with(&format!("{}/", top.to_ascii_lowercase())));
                            }
                        }
                    }
                }
                let value = values.first().and_then(|v| HeaderValue::from_bytes(v).ok());
                let _ = body::media_matches(&patterns, value.as_ref());
                let _ = body::accept_value(&patterns);
                if let Ok(mut resp) = ResponseHeader::build(200, None) {
                    if let Some(v) = value {
                        let _ = resp.append_header(CONTENT_TYPE, v);
                    }
                    if body::one_content_type(&mut resp, &patterns).is_ok() {
                        assert_eq!(resp.headers.get_all(CONTENT_TYPE).iter().count(), 1);
                    }
                }
            }
            9 => {
                let Ok(mut resp) = ResponseHeader::build(200, None) else {
                    return;
                };
                for v in values {
                    if let Ok(v) = HeaderValue::from_bytes(v) {
                        let _ = resp.append_header(CONTENT_ENCODING, v);
                    }
                }
                let mut declared = None;
                if let Ok(v) = HeaderValue::from_str(&input.name) {
                    // A value that is not visible ASCII declares nothing.
                    let text = v.to_str().ok().map(str::to_string);
                    if resp.append_header(CONTENT_LENGTH, v).is_ok() {
                        declared = text.and_then(|t| t.trim().parse::<u64>().ok());
                    }
                }
                let coding = body::coding(&resp);
                if let body::Coding::Other(name) = &coding {
                    assert!(!name.is_empty(), "an unnamed coding");
                }
                assert_eq!(
                    body::declared_too_large(&resp, 10),
                    declared.is_some_and(|n| n > 10)
                );
            }
            _ => {
                let _ = percent::decode(&text, percent::Mode::Form);
                let strict = percent::decode(&text, percent::Mode::Strict);
                if let Some(bytes) = &strict {
                    assert!(bytes.len() <= text.len());
                }
                let mut encoded = String::new();
                percent::encode_component_into(&mut encoded, &input.name);
                assert!(
                    encoded
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                    "{encoded:?}"
                );
                assert_eq!(
                    percent::decode_str(&encoded).as_deref(),
                    Some(input.name.as_str())
                );
                assert!(percent::names_param(&encoded, &input.name), "{encoded:?}");
                let stripped = percent::strip_params(&text, &[input.name.as_str()]);
                for pair in stripped.split('&').filter(|_| !stripped.is_empty()) {
                    assert!(!pair.is_empty(), "empty pair kept");
                    assert!(!percent::names_param(percent::split_pair(pair).0, &input.name));
                }
            }
        }
    }
}

#[test]
fn fuzz_headers() {
    fuzz("headers", headers_target::generate, headers_target::check);
}

// ---------------------------------------------------------------------------------------------
// Target `transform`: the bounded JSON parser, JSON paths, document rules, bodies, query rules.
// ---------------------------------------------------------------------------------------------

mod transform_target {
    use super::*;
    use portcullis::config::QueryRules;
    use portcullis::percent;
    use portcullis::transform::body::{self, BodyError, Coding};
    use portcullis::transform::json::{Failure, JsonPath, JsonRules, Step};
    use portcullis::transform::{bounded, query};
    use serde_json::{Map, Value};
    use std::io::Write;

    #[derive(Clone, Debug)]
    pub struct Input {
        kind: u8,
        /// A document, a body, or a query.
        text: Bytes,
        /// Rules (`deny:a.b`, `set:a={…}`, …) or paths.
        rules: Vec<String>,
        /// A budget or a body limit.
        number: usize,
        /// The uncompressed body, when `text` is exactly its compression.
        plain: Option<Vec<u8>>,
    }

    impl Shrink for Input {
        fn shrink(&self) -> Box<dyn Iterator<Item = Self> + '_> {
            let texts = self.text.shrink().map(move |text| Input { text, ..self.clone() });
            let rules = self.rules.shrink().map(move |rules| Input {
                rules,
                ..self.clone()
            });
            Box::new(texts.chain(rules))
        }
    }

    #[rustfmt::skip]
    const KEYS: &[&str] = &[
        "a", "b", "c", "id", "items", "name", "user", "x.y", "", "é", "a[]", "[",
        "$serde_json::private::Number",
    ];
    const NUMBERS_JSON: &[&str] = &[
        "0",
        "-1",
        "1.5",
        "18446744073709551615",
        "-9223372036854775808",
        "1e300",
    ];
    const NARROW: (&[&str], &[&str]) = (&["a", "b"], &["a", "b", "a[]"]);
    const PATHS: &[&str] = &["a", "b", "c", "id", "items", "name", "user", "items[]", "é", "x"];

    fn random_value(rng: &mut StdRng, depth: u32, keys: &[&str]) -> Value {
        match rng.gen_range(0..if depth == 0 { 5 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.gen()),
            2 => pick_json(rng, NUMBERS_JSON),
            3 => Value::String(atoms_text(
                rng,
                &["a", "é", "\"", "\\", "\u{0}", "\u{ffff}", " "],
                5,
            )),
            4 => serde_json::from_str(pick_str(
                rng,
                &["1e400", "-0", "123456789012345678901234567890", "1.50", "0.0e0"],
            ))
            .unwrap_or(Value::Null),
            5 | 6 => {
                let mut m = Map::new();
                for _ in 0..rng.gen_range(0..5) {
                    m.insert(pick(rng, keys).to_string(), random_value(rng, depth - 1, keys));
                }
                Value::Object(m)
            }
            _ => Value::Array(
                (0..rng.gen_range(0..5))
                    .map(|_| random_value(rng, depth - 1, keys))
                    .collect(),
            ),
        }
    }

    fn json_text(rng: &mut StdRng, keys: &[&str]) -> Vec<u8> {
        let doc = random_value(rng, 5, keys);
        let mut text = if rng.gen_bool(0.3) {
            serde_json::to_vec_pretty(&doc)
        } else {
            serde_json::to_vec(&doc)
        }
        .unwrap_or_default();
        match rng.gen_range(0..10) {
            0..=5 => {}
            6 | 7 => {
                #[rustfmt::skip]
                let dict: &[&[u8]] = &[
                    b"1e400", b"-0", b"\"\\ud800\"", b"\"\\u0000\"", b"{\"a\":1,\"a\":2}", b"[", b"]", b"{",
                    b"}", b",", b":", b"\"", b"\\", b"NaN", b"Infinity", b"\xef\xbb\xbf", b"\xff", b" ",
                    b"null", b"0.", b"01", b"1e", b"{\"$serde_json::private::Number\":\"1\"}",
                ];
                let rounds = rng.gen_range(1..4);
                mutate_bytes(rng, &mut text, dict, rounds);
            }
            8 => {
                let depth = *pick(rng, &[100usize, 126, 127, 128, 129, 130, 1000]);
                let (open, close) = *pick(rng, &[("[", "]"), ("{\"a\":", "}")]);
                text = format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes();
            }
            _ => {
                let n = rng.gen_range(0..3000);
                let item = *pick(rng, &["0", "{}", "[]", "\"\"", "{\"abc\":1}", "null"]);
                text = format!("[{}]", vec![item; n].join(",")).into_bytes();
            }
        }
        text
    }

    fn random_path(rng: &mut StdRng, paths: &[&str]) -> String {
        (0..rng.gen_range(1..4))
            .map(|_| *pick(rng, paths))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn random_rules(rng: &mut StdRng, paths: &[&str]) -> Vec<String> {
        let only = rng.gen_range(0..6);
        let count = rng.gen_range(0..4);
        // Rules that meet: a path often continues where an earlier rename put a value (the
        // partial parser must open the value's source too).
        let mut destinations: Vec<String> = Vec::new();
        let path = |rng: &mut StdRng, destinations: &[String]| match destinations.last() {
            Some(to) if rng.gen_bool(0.5) => format!("{to}.{}", random_path(rng, paths)),
            _ => random_path(rng, paths),
        };
        (0..count)
            .map(|_| {
                let op = match only {
                    0 => "deny",
                    1 => "allow",
                    2 => "set",
                    3 => "rename",
                    4 => "target",
                    _ => *pick(rng, &["deny", "allow", "set", "rename", "target", "wrap"]),
                };
                match op {
                    "set" => format!(
                        "set:{}={}",
                        path(rng, &destinations),
                        serde_json::to_string(&random_value(rng, 2, KEYS)).unwrap_or_default()
                    ),
                    "rename" => {
                        let (from, to) = (path(rng, &destinations), random_path(rng, paths));
                        destinations.push(to.clone());
                        format!("rename:{from}>{to}")
                    }
                    "wrap" => format!("wrap:{}", pick(rng, KEYS)),
                    _ => format!("{op}:{}", path(rng, &destinations)),
                }
            })
            .collect()
    }

    fn compress(coding: u8, data: &[u8]) -> Vec<u8> {
        if coding == 1 {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = enc.write_all(data);
            enc.finish().unwrap_or_default()
        } else {
            let mut enc = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 20);
            let _ = enc.write_all(data);
            let _ = enc.flush();
            enc.into_inner()
        }
    }

    pub fn generate(rng: &mut StdRng) -> Input {
        let kind = rng.gen_range(0..6u8);
        let mut input = Input {
            kind,
            text: Bytes::default(),
            rules: Vec::new(),
            number: 0,
            plain: None,
        };
        match kind {
            0 => {
                input.text = Bytes(json_text(rng, KEYS));
                input.number = match rng.gen_range(0..4) {
                    0 => rng.gen_range(0..4096),
                    1 => usize::MAX,
                    _ => bounded::budget_for(input.text.len()),
                };
            }
            1 => {
                input.rules = (0..rng.gen_range(1..4))
                    .map(|_| {
                        if rng.gen_bool(0.7) {
                            random_path(rng, PATHS)
                        } else {
                            atoms_text(rng, &["a", ".", "[]", "[", "]", "é", " ", "..", "b"], 40)
                        }
                    })
                    .collect();
            }
            2 | 3 => {
                // Half the time two keys only, so rules and documents meet often.
                let (keys, paths) = if rng.gen_bool(0.5) { (KEYS, PATHS) } else { NARROW };
                input.text = Bytes(json_text(rng, keys));
                input.rules = random_rules(rng, paths);
            }
            4 => {
                let coding = rng.gen_range(0..4u8);
                let data = if rng.gen_bool(0.5) {
                    json_text(rng, KEYS)
                } else {
                    random_bytes(rng, 3000)
                };
                input.number = rng.gen_range(0..=data.len() * 2 + 10);
                input.rules = vec![coding.to_string()];
                if coding == 1 || coding == 2 {
                    let mut raw = compress(coding, &data);
                    if coding == 1 && rng.gen_bool(0.2) {
                        // Gzip members concatenated: one body.
                        let more = random_bytes(rng, 200);
                        raw.extend(compress(1, &more));
                        input.plain = Some([data, more].concat());
                    } else {
                        input.plain = Some(data);
                    }
                    if rng.gen_bool(0.3) {
                        let rounds = rng.gen_range(1..4);
                        mutate_bytes(rng, &mut raw, &[b"\0", b"\xff"], rounds);
                        input.plain = None;
                    }
                    input.text = Bytes(raw);
                } else {
                    input.text = Bytes(data);
                }
            }
            _ => {
                #[rustfmt::skip]
                let atoms = &[
                    "&", "&", "=", "a", "b", "debug", "Debug", "debug[]", "debug[x]", "debug%5B%5D",
                    "de%62ug", ";", "%", "%zz", "+", "1", "é", "%C3%A9", "api_key", "api.key",
                ];
                input.text = Bytes(atoms_text(rng, atoms, 16).into_bytes());
                input.rules = (0..rng.gen_range(0..3))
                    .map(|_| {
                        let name = *pick(rng, &["debug", "a", "api_key", "b", "x y", "é", "d[]"]);
                        match rng.gen_range(0..3) {
                            0 => format!("remove:{name}"),
                            1 => format!("rename:{name}>{}", pick(rng, &["a", "b", "debug", "z"])),
                            _ => format!(
                                "set:{name}={}",
                                atoms_text(rng, &["1", "&", "=", " ", "é", "%"], 4)
                            ),
                        }
                    })
                    .collect();
            }
        }
        input
    }

    /// Every value's cost as `bounded` documents it, not counting spare vector capacity: a
    /// lower bound of what parsing it was charged.
    fn cost(v: &Value) -> usize {
        let value = std::mem::size_of::<Value>();
        let entry = std::mem::size_of::<String>() + 16;
        value
            + match v {
                Value::String(s) => s.len(),
                // Integers that fit 64 bits arrive as integers; others as their digits.
                Value::Number(n) if n.is_u64() || n.is_i64() => 0,
                Value::Number(n) => n.to_string().len(),
                Value::Array(items) => items.iter().map(cost).sum(),
                Value::Object(m) => m.iter().map(|(k, v)| entry + k.len() + cost(v)).sum(),
                _ => 0,
            }
    }

    fn compile(rules: &[String]) -> JsonRules {
        let mut out = JsonRules::default();
        for rule in rules {
            let Some((op, arg)) = rule.split_once(':') else {
                continue;
            };
            match op {
                "deny" | "allow" | "target" => {
                    if let Ok(p) = JsonPath::parse(arg) {
                        match op {
                            "deny" => out.deny.push(p),
                            "allow" => out.allow.push(p),
                            _ => out.target = Some(p),
                        }
                    }
                }
                "set" => {
                    if let Some((path, value)) = arg.split_once('=') {
                        if let (Ok(p), Ok(v)) = (JsonPath::parse(path), serde_json::from_str(value)) {
                            out.set.push((p, v));
                        }
                    }
                }
                "rename" => {
                    if let Some((from, to)) = arg.split_once('>') {
                        if let (Ok(a), Ok(b)) = (JsonPath::parse(from), JsonPath::parse(to)) {
                            out.rename.push((a, b));
                        }
                    }
                }
                // As the configuration decoder does: reserved keys are refused there.
                "wrap" if !bounded::reserved_key(arg) => out.wrap = Some(arg.to_string()),
                _ => {}
            }
        }
        out
    }

    /// Whether an object reached by `parent` (keys step into objects, `[]` and keys met by an
    /// array into every element) still holds `key`.
    fn reaches(v: &Value, parent: &[Step], key: &str) -> bool {
        match (parent.first(), v) {
            (None, Value::Object(m)) => m.contains_key(key),
            (None, Value::Array(a)) | (Some(Step::Key(_)), Value::Array(a)) => {
                a.iter().any(|x| reaches(x, parent, key))
            }
            (Some(Step::Each), Value::Array(a)) => a.iter().any(|x| reaches(x, &parent[1..], key)),
            (Some(Step::Key(k)), Value::Object(m)) => m.get(k).is_some_and(|c| reaches(c, &parent[1..], key)),
            _ => false,
        }
    }

    /// The value at `steps`, through objects only.
    fn get<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
        steps.iter().try_fold(v, |here, step| match (step, here) {
            (Step::Key(k), Value::Object(m)) => m.get(k),
            _ => None,
        })
    }

    fn check_rules(rules_text: &[String], doc: Value) {
        let rules = compile(rules_text);
        let result = rules.apply(doc.clone());
        let out = match (&rules.target, result) {
            (None, Err(e)) => panic!("{e:?} without a target"),
            (_, Err(_)) => {
                let target = rules.target.as_ref().expect("target");
                assert!(
                    get(&doc, target.steps()).is_none(),
                    "a present target reported missing"
                );
                return;
            }
            (_, Ok(out)) => out,
        };
        if let Some(key) = &rules.wrap {
            match &out {
                Value::Object(m) => assert!(m.len() == 1 && m.contains_key(key), "wrap"),
                other => panic!("wrap gave {other}"),
            }
            return;
        }
        let only_target = rules.allow.is_empty()
            && rules.deny.is_empty()
            && rules.rename.is_empty()
            && rules.set.is_empty();
        if only_target {
            if let Some(target) = &rules.target {
                assert_eq!(
                    Some(&out),
                    get(&doc, target.steps()),
                    "target picked another value"
                );
            } else {
                assert_eq!(out, doc, "no rules changed the document");
            }
        }
        let only = |deny: bool, allow: bool, set: bool| {
            rules.target.is_none()
                && rules.rename.is_empty()
                && (deny || rules.deny.is_empty())
                && (allow || rules.allow.is_empty())
                && (set || rules.set.is_empty())
        };
        if only(true, false, false) && !rules.deny.is_empty() {
            for path in &rules.deny {
                let steps = path.steps();
                if let Some((Step::Key(key), parent)) = steps.split_last() {
                    assert!(!reaches(&out, parent, key), "denied `{path}` is still there");
                }
            }
            assert_eq!(
                rules.apply(out.clone()).ok(),
                Some(out.clone()),
                "deny is not idempotent"
            );
        }
        if only(false, true, false) && !rules.allow.is_empty() {
            assert_eq!(
                rules.apply(out.clone()).ok(),
                Some(out.clone()),
                "allow is not idempotent"
            );
        }
        if only(false, false, true) && rules.set.len() == 1 {
            let (path, value) = &rules.set[0];
            let steps = path.steps();
            let mut here = &out;
            let mut through_objects = !steps.contains(&Step::Each);
            for step in steps {
                match (step, here) {
                    (Step::Key(k), Value::Object(m)) => match m.get(k) {
                        Some(next) => here = next,
                        None => panic!("set `{path}` left no value"),
                    },
                    _ => {
                        through_objects = false;
                        break;
                    }
                }
            }
            if through_objects {
                assert_eq!(here, value, "set `{path}`");
            }
        }
        if rules.rename.len() == 1 && only(false, false, false) {
            let (from, to) = &rules.rename[0];
            let (f, t) = (from.steps(), to.steps());
            // Same parent, keys only, reached through objects: a plain rename in place.
            if f.len() == t.len() && f[..f.len() - 1] == t[..t.len() - 1] && !from.has_each() && from != to {
                let parent = &f[..f.len() - 1];
                if let (Some(Value::Object(before)), Some(Value::Object(after))) =
                    (get(&doc, parent), get(&out, parent))
                {
                    let (Some(Step::Key(a)), Some(Step::Key(b))) = (f.last(), t.last()) else {
                        return;
                    };
                    if let Some(v) = before.get(a) {
                        assert_eq!(after.get(b), Some(v), "rename `{from}` -> `{to}` lost the value");
                        assert!(
                            !after.contains_key(a),
                            "rename `{from}` -> `{to}` kept the old key"
                        );
                        assert_eq!(after.len(), before.len() - usize::from(before.contains_key(b)));
                    } else {
                        assert_eq!(before, after, "rename of an absent key changed the object");
                    }
                }
            }
        }
    }

    fn pair_names(pair: &str, param: &str) -> bool {
        let name = percent::split_pair(pair).0;
        let decoded = percent::decode_str(name);
        let name_text = decoded.as_deref().unwrap_or(name);
        percent::names_param(name, param)
            || name_text
                .split_once('[')
                .is_some_and(|(base, rest)| rest.contains(']') && percent::names_param(base, param))
            || percent::hides_param(pair, param)
    }

    #[rustfmt::skip]
    const KIND_NAMES: [&str; 6] = [
        "bounded", "json-path", "rules", "transform_json", "decode", "query-rules",
    ];

    pub fn check(input: &Input) {
        note(KIND_NAMES[usize::from(input.kind)]);
        match input.kind {
            0 => {
                let text = &input.text;
                let plain: Result<Value, _> = serde_json::from_slice(text);
                match bounded::parse(text, input.number) {
                    Ok(v) => {
                        note("bounded: accepted");
                        let plain = plain.expect("bounded accepted what serde_json refuses");
                        assert_eq!(v, plain, "bounded and serde_json disagree");
                        let c = cost(&v);
                        assert!(
                            c <= input.number,
                            "accepted a tree of {c} bytes with a budget of {}",
                            input.number
                        );
                        assert!(
                            bounded::parse(text, c - 1).is_err(),
                            "accepted with less budget than the tree costs"
                        );
                        assert_eq!(bounded::parse(text, input.number.saturating_mul(2)).ok(), Some(v));
                    }
                    Err(e) => {
                        assert!(!e.is_empty());
                        // Keys serde_json reserves are refused wherever they appear (a finding:
                        // written back, they made the document unreadable).
                        let reserved = plain.is_ok()
                            && bounded::parse(text, usize::MAX).is_err_and(|u| u.contains("is reserved"));
                        if reserved {
                            note("bounded: reserved key");
                        } else if plain.is_ok() {
                            note("bounded: over budget");
                            assert!(e.contains("too large"), "refused a valid document: {e}");
                            assert!(bounded::parse(text, usize::MAX).is_ok(), "unbounded refusal: {e}");
                        }
                    }
                }
                assert!(bounded::budget_for(text.len()) >= 4096);
            }
            1 => {
                for text in &input.rules {
                    if let Ok(path) = JsonPath::parse(text) {
                        let steps = path.steps();
                        assert!(!steps.is_empty() && steps.len() <= 32, "{text:?}");
                        assert!(matches!(steps.last(), Some(Step::Key(_))), "{text:?} ends in []");
                        for step in steps {
                            if let Step::Key(k) = step {
                                assert!(
                                    !k.is_empty() && !k.contains(['.', '[', ']']),
                                    "key {k:?} in {text:?}"
                                );
                            }
                        }
                        assert_eq!(path.to_string(), *text, "a path does not print as written");
                        assert_eq!(JsonPath::parse(&path.to_string()), Ok(path.clone()));
                        assert!(path.within(&path));
                    }
                }
            }
            2 => {
                if let Ok(doc) = bounded::parse(&input.text, bounded::budget_for(input.text.len())) {
                    note("rules: applied");
                    check_rules(&input.rules, doc);
                }
            }
            3 => {
                let rules = compile(&input.rules);
                let whole = bounded::parse(&input.text, bounded::budget_for(input.text.len()));
                match body::transform_json(&rules, &input.text) {
                    Ok(out) => {
                        // Values no rule reaches are copied as they came, so the output is
                        // compared by what it reads as, not byte for byte.
                        serde_json::from_slice::<serde::de::IgnoredAny>(&out)
                            .expect("transformed body is not JSON");
                        match whole {
                            Ok(doc) => {
                                // `apply` limits copies by the parsed tree's weight, the transform
                                // by the text's length: either may refuse what the other writes.
                                let expected = match rules.apply(doc) {
                                    Err(Failure::TooLarge) => {
                                        note("transform_json: copies over apply's limit");
                                        return;
                                    }
                                    other => other.expect("transformed where the rules fail"),
                                };
                                note("transform_json: compared with the whole document");
                                // A finding once: serde_json (`arbitrary_precision`) reads an
                                // object whose first key is its private number token as a number;
                                // rules may no longer name such keys, so every output reads back
                                // as written.
                                let reread: Value =
                                    serde_json::from_slice(&out).expect("transformed body is not JSON");
                                assert_eq!(reread, expected, "the body does not read back as the document");
                            }
                            // Raw text may hold what the whole-document parser refuses (a lone
                            // surrogate, a reserved key, nesting past 128, more than the budget
                            // once parsed): the rules never look into it.
                            Err(_) => note("transform_json: accepted raw text the whole parser refuses"),
                        }
                    }
                    // The partial parse charges no more than the whole one (a finding once:
                    // scenario T's 1 KiB document was refused as too large).
                    Err(BodyError::InvalidJson(e)) => {
                        assert!(whole.is_err(), "refused a document the whole parser reads: {e}");
                    }
                    Err(BodyError::TargetMissing) => assert!(rules.target.is_some()),
                    // Only copies made by `rename` or `set` grow a document past its limit.
                    Err(BodyError::Overgrown) => {
                        assert!(!rules.rename.is_empty() || !rules.set.is_empty());
                        note("transform_json: overgrown");
                    }
                    Err(other) => panic!("transform_json: {other:?}"),
                }
                let empty = JsonRules::default();
                if let (Ok(out), Ok(plain)) = (
                    body::transform_json(&empty, &input.text),
                    serde_json::from_slice::<Value>(&input.text),
                ) {
                    let reread: Value = serde_json::from_slice(&out).expect("no rules, not JSON");
                    assert_eq!(reread, plain, "no rules, another document");
                }
            }
            4 => {
                let coding = match input.rules.first().map(String::as_str) {
                    Some("0") => Coding::Identity,
                    Some("1") => Coding::Gzip,
                    Some("2") => Coding::Brotli,
                    _ => Coding::Other("zstd".into()),
                };
                let max = input.number;
                match body::decode(&coding, &input.text, max) {
                    Ok(out) => {
                        note("decode: ok");
                        if coding == Coding::Identity {
                            assert_eq!(&out[..], &input.text[..]);
                        } else {
                            assert!(
                                out.len() <= max,
                                "decoded {} bytes over a limit of {max}",
                                out.len()
                            );
                            if let Some(plain) = &input.plain {
                                assert_eq!(&out[..], &plain[..], "decoded other bytes");
                            }
                        }
                    }
                    Err(e) => {
                        assert!(!e.reason().is_empty());
                        assert!(!matches!(coding, Coding::Identity));
                        if let Some(plain) = &input.plain {
                            assert!(plain.len() > max, "refused a good body within the limit: {e:?}");
                            assert_eq!(e, BodyError::TooLarge);
                        }
                    }
                }
            }
            _ => {
                let query_text = lossy(&input.text);
                let mut rules = QueryRules::default();
                for r in &input.rules {
                    match r.split_once(':') {
                        Some(("remove", name)) => rules.remove.push(name.to_string()),
                        Some(("rename", arg)) => {
                            if let Some((a, b)) = arg.split_once('>') {
                                rules.rename.push((a.to_string(), b.to_string()));
                            }
                        }
                        Some(("set", arg)) => {
                            if let Some((n, v)) = arg.split_once('=') {
                                rules.set.push((n.to_string(), v.to_string()));
                            }
                        }
                        _ => {}
                    }
                }
                let out = query::apply(&rules, &query_text);
                if rules.rename.is_empty() && rules.set.is_empty() {
                    for pair in out.split('&').filter(|p| !p.is_empty()) {
                        for name in &rules.remove {
                            assert!(!pair_names(pair, name), "`{name}` survives in {pair:?}");
                        }
                    }
                }
                if rules.remove.is_empty() && rules.rename.is_empty() && rules.set.len() == 1 {
                    let (name, value) = &rules.set[0];
                    let named: Vec<&str> = out.split('&').filter(|p| pair_names(p, name)).collect();
                    assert_eq!(named.len(), 1, "`{name}` set once, found {named:?}");
                    let v = percent::split_pair(named[0]).1;
                    assert_eq!(percent::decode_str(v).as_deref(), Some(value.as_str()));
                }
                let params: Vec<String> = rules.remove.clone();
                let without = query::without_params(&query_text, &params);
                for pair in without.split('&').filter(|p| !p.is_empty()) {
                    for name in &params {
                        assert!(!pair_names(pair, name), "`{name}` survives in {pair:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn fuzz_transform() {
    fuzz("transform", transform_target::generate, transform_target::check);
}
