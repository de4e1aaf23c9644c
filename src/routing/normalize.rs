//! Request-target normalization: one canonical path per request.
//!
//! # Why this module exists
//!
//! The gateway makes three independent decisions from the request path: which
//! route (and upstream) handles the request, which policies (auth, rate limits,
//! deny rules) apply, and what path is sent to the upstream. If those decisions
//! are made on *different* spellings of the path — or if the gateway and the
//! upstream interpret the same bytes differently — an attacker can reach a
//! protected resource through a spelling the policy layer does not recognise.
//! Every well-known path-confusion bypass in reverse proxies is an instance of
//! that gap.
//!
//! [`normalize_target`] closes the gap by turning the raw request-target bytes
//! into exactly **one** canonical path. The gateway routes on it, evaluates
//! every policy on it, and forwards it upstream unchanged, so there is no
//! second interpretation left for an attacker to exploit. Anything that cannot
//! be made unambiguous is rejected (the caller answers `400`).
//!
//! # Which rule defeats which attack
//!
//! | Rule | Attack defeated |
//! |------|-----------------|
//! | Length limit ([`PathError::TooLong`]) | resource exhaustion, oversized-URI parser differentials |
//! | `#` rejected ([`PathError::Fragment`]) | `/public#/../admin`: fragments are never sent by real clients, and proxies disagree on whether to strip them |
//! | raw control bytes / space, `%00`–`%1F`, `%7F` rejected ([`PathError::ControlByte`]) | request splitting, NUL truncation (`/admin%00.png`), CR/LF header injection towards the upstream |
//! | malformed `%` rejected ([`PathError::BadEscape`]) | parsers that disagree on `%zz`/`%4` (pass through, drop, or decode) |
//! | `%2F` / `%5C` rejected ([`PathError::EncodedSeparator`]) | Envoy-style encoded-slash bypass: `/users%2F..%2Fadmin` is one segment for the gateway but several for an upstream that decodes first |
//! | raw `\` rejected ([`PathError::Backslash`]) | upstreams (IIS, some frameworks) that treat `\` as `/` |
//! | unreserved escapes decoded (`%2e` → `.`, `%41` → `A`) | Traefik-style `%2e%2e` dot segments that the gateway would otherwise not resolve but the upstream would |
//! | `..;` / `.;x` rejected ([`PathError::DotSegmentParam`]) | Tomcat-style `/public/..;/admin`: the gateway sees a segment named `..;`, Tomcat strips `;…` and walks up |
//! | empty segments dropped | APISIX-style `//internal` double-slash bypass of prefix rules |
//! | `.` / `..` resolved, `..` above `/` rejected ([`PathError::EscapesRoot`]) | classic traversal and policy bypass via `/public/../admin` |
//! | remaining escapes uppercased, bytes ≥ 0x80 percent-encoded | two spellings of the same escape (`%3a`/`%3A`) or of the same raw byte cannot match different rules |
//!
//! # Documented choices
//!
//! * **Query string.** The query is validated (no `#`, no control bytes or
//!   space, well-formed escapes, no escape decoding to a control byte) but it is
//!   *not* rewritten. If the raw query is not valid UTF-8, each byte that belongs
//!   to an invalid UTF-8 sequence is percent-encoded (`%XX`, uppercase hex) so
//!   the query can be held in a `String`; valid UTF-8 (including non-ASCII
//!   characters) is kept verbatim. A query that is valid UTF-8 is returned
//!   byte-for-byte as received.
//! * **`%3B` in dot segments.** As defence in depth, an encoded `;` after a dot
//!   segment (`..%3B`, `.%3bx`) is treated like a raw `;` and rejected with
//!   [`PathError::DotSegmentParam`], because some upstreams decode before
//!   stripping matrix parameters.
//! * **Error precedence.** When a target has several problems, the error of the
//!   earliest rule (in the order of the variants' documentation below) wins:
//!   `TooLong`, `Fragment`, `ControlByte` (raw), `NotOriginForm`, escape errors
//!   in the path, escape errors in the query, `Backslash`, then the dot-segment
//!   errors (`DotSegmentParam` / `EscapesRoot`, whichever occurs first).
//! * **Matrix parameters are kept.** A segment such as `a;b=1` is an ordinary
//!   segment. Consequently the prefix `/admin` does *not* cover `/admin;x`
//!   (nor `/;x/admin`); callers whose upstreams strip `;` parameters must not
//!   rely on deny-style prefix rules alone.
//! * Other raw printable ASCII (e.g. `:`, `@`, `<`) is kept as received; only
//!   the escape forms are canonicalised. The output path is always ASCII.

use std::fmt;

/// The canonical form of a request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// Canonical path: starts with '/', no empty segments (except a single trailing '/' which is preserved
    /// when the input path ended with '/'), no '.' or '..' segments, unreserved characters decoded,
    /// every remaining percent-escape in UPPERCASE hex.
    pub path: String,
    /// The raw query string without the leading '?', exactly as received (None when there was no '?').
    /// Validated (see below) but not rewritten. Exception: bytes that are not part of a valid UTF-8
    /// sequence are percent-encoded (uppercase hex) so the query fits in a `String`.
    pub query: Option<String>,
}

/// Why a request target was rejected. Every variant maps to a `400 Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Target does not start with '/' (asterisk-form "*", authority-form, or empty).
    /// Absolute-form is handled by the caller, which passes only the path+query part.
    NotOriginForm,
    /// A '#' anywhere in the target.
    Fragment,
    /// Raw byte < 0x20 or 0x7F anywhere, or raw space, or a percent-escape decoding to 0x00-0x1F or 0x7F.
    ControlByte,
    /// '%' not followed by two hex digits.
    BadEscape,
    /// %2F / %2f / %5C / %5c in the path.
    EncodedSeparator,
    /// Raw '\' in the path.
    Backslash,
    /// A segment that is '.' or '..' before a ';' (e.g. "..;", "..;jsessionid=1", ".;x") — after decoding.
    DotSegmentParam,
    /// '..' would go above '/'.
    EscapesRoot,
    /// Input longer than the given max length.
    TooLong,
}

impl PathError {
    /// Short human-readable text, used as the `detail` of the 400 problem+json response.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            PathError::NotOriginForm => "request target must be in origin-form (start with '/')",
            PathError::Fragment => "fragment ('#') not allowed in request target",
            PathError::ControlByte => "control character or space in request target",
            PathError::BadEscape => "malformed percent-escape in request target",
            PathError::EncodedSeparator => "encoded '/' or '\\' in path",
            PathError::Backslash => "backslash in path",
            PathError::DotSegmentParam => "dot segment with parameters ('..;') in path",
            PathError::EscapesRoot => "path escapes above the root",
            PathError::TooLong => "request target too long",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode the escape whose '%' is at `bytes[i]`. `BadEscape` unless two hex digits follow.
#[inline]
fn decode_escape(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = bytes.get(i + 1).copied().and_then(hex_val);
    let lo = bytes.get(i + 2).copied().and_then(hex_val);
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok((hi << 4) | lo),
        _ => Err(PathError::BadEscape),
    }
}

#[inline]
fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7F
}

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[inline]
fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
}

/// Outcome of closing one segment of the output buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SegKind {
    Empty,
    Dot,
    Normal,
}

/// Close the segment that starts (with its '/') at `seg_start` in `out`: drop it when empty or
/// `.`, resolve `..`, reject dot segments with parameters. `out` only ever holds ASCII, so every
/// truncation lands on a char boundary.
fn finish_segment(out: &mut String, seg_start: usize) -> Result<SegKind, PathError> {
    let seg = out.as_bytes().get(seg_start + 1..).unwrap_or(&[]);
    let dots = seg.iter().take_while(|&&b| b == b'.').count();
    let after = seg.get(dots..).unwrap_or(&[]);
    if seg.is_empty() {
        out.truncate(seg_start);
        return Ok(SegKind::Empty);
    }
    if dots == 0 || dots > 2 {
        return Ok(SegKind::Normal);
    }
    if after.is_empty() {
        out.truncate(seg_start);
        if dots == 2 {
            // Pop the previous kept segment; `out` is "/s1/s2/.../sk" or empty.
            match out.as_bytes().iter().rposition(|&b| b == b'/') {
                Some(prev) => out.truncate(prev),
                None => return Err(PathError::EscapesRoot),
            }
        }
        return Ok(SegKind::Dot);
    }
    // Escapes in `out` are always uppercase, so "%3B" is the only spelling of an encoded ';'.
    if after.first() == Some(&b';') || after.starts_with(b"%3B") {
        return Err(PathError::DotSegmentParam);
    }
    Ok(SegKind::Normal)
}

/// Dot-segment bookkeeping across segments: whether the last non-empty input segment was a dot
/// segment (=> trailing '/'), and the first dot-segment error (deferred for rule precedence).
#[derive(Default)]
struct DotState {
    last_was_dot: bool,
    error: Option<PathError>,
}

impl DotState {
    #[inline]
    fn close(&mut self, out: &mut String, seg_start: usize) {
        match finish_segment(out, seg_start) {
            Ok(SegKind::Empty) => {}
            Ok(SegKind::Dot) => self.last_was_dot = true,
            Ok(SegKind::Normal) => self.last_was_dot = false,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }
}

/// Validate the query's escapes (rule 4): well-formed, not decoding to a control byte.
fn validate_query(q: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    while i < q.len() {
        if q[i] == b'%' {
            if is_control(decode_escape(q, i)?) {
                return Err(PathError::ControlByte);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The query as a `String`: verbatim if valid UTF-8, otherwise with the bytes of every invalid
/// UTF-8 sequence percent-encoded (uppercase hex).
fn query_to_string(q: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(q) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(q.len() * 3);
    let mut rest = q;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to().min(rest.len()));
                if let Ok(s) = std::str::from_utf8(valid) {
                    out.push_str(s);
                }
                let bad = e.error_len().unwrap_or(after.len()).clamp(1, after.len().max(1));
                let (bad_bytes, tail) = after.split_at(bad.min(after.len()));
                for &b in bad_bytes {
                    push_pct(&mut out, b);
                }
                rest = tail;
            }
        }
    }
    out
}

/// Normalize the raw request-target bytes (origin-form: path plus optional `?query`) into the
/// single canonical path used for routing, policy evaluation and the upstream request.
///
/// `max_len`: maximum accepted length of the raw target in bytes (the gateway passes 8192 by default).
///
/// Never panics; runs in one pass over the target for the byte-class checks plus one pass over
/// the path that decodes, validates and resolves dot segments in place in the output buffer.
///
/// # Errors
///
/// Returns the [`PathError`] of the first violated rule (see the module documentation for the
/// precedence) when the target cannot be reduced to one unambiguous canonical path.
pub fn normalize_target(raw: &[u8], max_len: usize) -> Result<NormalizedTarget, PathError> {
    // Rule 1: length.
    if raw.len() > max_len {
        return Err(PathError::TooLong);
    }

    // Rules 1-2: one scan for '#', the first '?', raw control bytes / space, and the number of
    // high bytes in the path (each becomes "%XX", used to size the output exactly).
    let mut qpos: Option<usize> = None;
    let mut control = false;
    let mut high_in_path = 0usize;
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'#' => return Err(PathError::Fragment),
            b'?' if qpos.is_none() => qpos = Some(i),
            0x00..=0x20 | 0x7F => control = true,
            0x80..=0xFF if qpos.is_none() => high_in_path += 1,
            _ => {}
        }
    }
    if control {
        return Err(PathError::ControlByte);
    }
    let (path, query) = match qpos {
        Some(q) => (&raw[..q], raw.get(q + 1..)),
        None => (raw, None),
    };

    // Rule 3: origin-form.
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }

    // Rules 4-8 for the path, in a single pass. Escape errors are returned at once; backslash and
    // dot-segment errors are deferred so that precedence follows the rule order.
    let mut out = String::with_capacity(path.len() + 2 * high_in_path + 1);
    let mut backslash = false;
    let mut dots = DotState::default();
    let mut seg_start = 0usize;
    let mut i = 0usize;
    while i < path.len() {
        let b = path[i];
        match b {
            b'/' => {
                if i != 0 {
                    dots.close(&mut out, seg_start);
                }
                seg_start = out.len();
                out.push('/');
                i += 1;
            }
            b'%' => {
                let v = decode_escape(path, i)?;
                if v == b'/' || v == b'\\' {
                    return Err(PathError::EncodedSeparator);
                }
                if is_control(v) {
                    return Err(PathError::ControlByte);
                }
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else {
                    push_pct(&mut out, v);
                }
                i += 3;
            }
            b'\\' => {
                backslash = true;
                i += 1;
            }
            0x80..=0xFF => {
                push_pct(&mut out, b);
                i += 1;
            }
            _ => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    dots.close(&mut out, seg_start);

    // Rule 4 for the query, then the deferred path errors (rules 5 and 7).
    if let Some(q) = query {
        validate_query(q)?;
    }
    if backslash {
        return Err(PathError::Backslash);
    }
    if let Some(e) = dots.error {
        return Err(e);
    }

    // Rule 8: trailing slash when the input ended with '/' or with a dot segment (RFC 3986 5.2.4).
    if out.is_empty() || dots.last_was_dot || path.last() == Some(&b'/') {
        out.push('/');
    }

    Ok(NormalizedTarget {
        path: out,
        query: query.map(query_to_string),
    })
}

/// Whether `path` (already canonical) is within `prefix` on a segment boundary:
/// prefix "/users" matches "/users", "/users/", "/users/7", never "/usersx"; prefix "/" matches everything;
/// a prefix ending in '/' like "/users/" matches "/users/" and "/users/7" but not "/users".
/// An empty prefix behaves like "/".
#[must_use]
pub fn has_segment_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// Remove `prefix` (which `has_segment_prefix` accepted) from the canonical `path`, keeping the result canonical:
/// strip "/users" from "/users/7" -> "/7", from "/users" -> "/", from "/users/" -> "/".
/// If `prefix` is not a segment prefix of `path`, `path` is returned unchanged.
#[must_use]
pub fn strip_segment_prefix(path: &str, prefix: &str) -> String {
    if !has_segment_prefix(path, prefix) {
        return path.to_owned();
    }
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    if rest.is_empty() {
        return "/".to_owned();
    }
    if rest.starts_with('/') {
        return rest.to_owned();
    }
    // `prefix` ended with '/': the slash belongs to both, give it back.
    let mut s = String::with_capacity(rest.len() + 1);
    s.push('/');
    s.push_str(rest);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathError::*;

    const MAX: usize = 8192;

    fn p(raw: &[u8]) -> Result<String, PathError> {
        normalize_target(raw, MAX).map(|t| t.path)
    }

    /// (input, expected canonical path or error) — also the corpus for the idempotence test.
    const CASES: &[(&[u8], Result<&str, PathError>)] = &[
        // Basics and rule 3.
        (b"/", Ok("/")),
        (b"", Err(NotOriginForm)),
        (b"*", Err(NotOriginForm)),
        (b"example.com:443", Err(NotOriginForm)),
        (b"a/b", Err(NotOriginForm)),
        (b"?x=1", Err(NotOriginForm)),
        (b"/a", Ok("/a")),
        (b"/a/b/c", Ok("/a/b/c")),
        // Dot segments (rule 7) and trailing slash (rule 8).
        (b"/a/./b", Ok("/a/b")),
        (b"/a/b/../c", Ok("/a/c")),
        (b"/a/b/..", Ok("/a/")),
        (b"/a/.", Ok("/a/")),
        (b"/a/..", Ok("/")),
        (b"/.", Ok("/")),
        (b"/./", Ok("/")),
        (b"/..", Err(EscapesRoot)),
        (b"/../a", Err(EscapesRoot)),
        (b"/a/../../b", Err(EscapesRoot)),
        (b"/a/../b/../c/./d", Ok("/c/d")),
        (b"/...", Ok("/...")),
        (b"/a/.../b", Ok("/a/.../b")),
        (b"/.a/..b/a.", Ok("/.a/..b/a.")),
        // Encoded dot segments (Traefik).
        (b"/a/%2e%2e/b", Ok("/b")),
        (b"/a/%2E%2e/b", Ok("/b")),
        (b"/a/.%2e/b", Ok("/b")),
        (b"/a/%2e/b", Ok("/a/b")),
        (b"/%2E%2E/x", Err(EscapesRoot)),
        (b"/public/%2e%2e/%2e%2e/admin", Err(EscapesRoot)),
        // Matrix params and Tomcat "..;".
        (b"/..;/admin", Err(DotSegmentParam)),
        (b"/public/..;/admin", Err(DotSegmentParam)),
        (b"/public/..;jsessionid=1/admin", Err(DotSegmentParam)),
        (b"/public/.;x/admin", Err(DotSegmentParam)),
        (b"/public/%2e%2e;/admin", Err(DotSegmentParam)),
        (b"/public/..%3b/admin", Err(DotSegmentParam)),
        (b"/public/.%3Bx", Err(DotSegmentParam)),
        (b"/a;b=1/c", Ok("/a;b=1/c")),
        (b"/a/b;v=2", Ok("/a/b;v=2")),
        (b"/...;x", Ok("/...;x")),
        (b"/a/;x", Ok("/a/;x")),
        (b"/a/b;x/..", Ok("/a/")),
        // Double slashes (APISIX).
        (b"//internal", Ok("/internal")),
        (b"///a//b///", Ok("/a/b/")),
        (b"//", Ok("/")),
        (b"/users/", Ok("/users/")),
        (b"/users//", Ok("/users/")),
        // Encoded separators (Envoy) and backslash.
        (b"/users%2Fadmin", Err(EncodedSeparator)),
        (b"/users%2fadmin", Err(EncodedSeparator)),
        (b"/a%5cb", Err(EncodedSeparator)),
        (b"/a%5Cb", Err(EncodedSeparator)),
        (b"/a/..%2F..%2Fadmin", Err(EncodedSeparator)),
        (b"/a\\b", Err(Backslash)),
        (b"/a/..\\..\\admin", Err(Backslash)),
        // Control bytes and space.
        (b"/a%00", Err(ControlByte)),
        (b"/a%0d%0aX-Injected:1", Err(ControlByte)),
        (b"/a%7f", Err(ControlByte)),
        (b"/a%1F", Err(ControlByte)),
        (b"/a\x00b", Err(ControlByte)),
        (b"/a\r\nb", Err(ControlByte)),
        (b"/a b", Err(ControlByte)),
        (b"/a\tb", Err(ControlByte)),
        (b"/a\x7f", Err(ControlByte)),
        (b"/a?q=\x01", Err(ControlByte)),
        (b"/a?q=a b", Err(ControlByte)),
        // Bad escapes.
        (b"/a%zz", Err(BadEscape)),
        (b"/a%4", Err(BadEscape)),
        (b"/a%", Err(BadEscape)),
        (b"/a%g1", Err(BadEscape)),
        (b"/a%%41", Err(BadEscape)),
        // Fragment.
        (b"/a#x", Err(Fragment)),
        (b"/public#/../admin", Err(Fragment)),
        (b"/a?x=1#y", Err(Fragment)),
        (b"#", Err(Fragment)),
        // Unreserved decoding and escape canonicalisation.
        (b"/%41%62c", Ok("/Abc")),
        (b"/%7e%2D%5f%2e%30", Ok("/~-_.0")),
        (b"/a%3ab", Ok("/a%3Ab")),
        (b"/a%3Ab", Ok("/a%3Ab")),
        (b"/a%20b", Ok("/a%20b")),
        (b"/a%25", Ok("/a%25")),
        (b"/a%252e", Ok("/a%252e")),
        (b"/a%c3%a9", Ok("/a%C3%A9")),
        (b"/a%ff", Ok("/a%FF")),
        // Raw high bytes.
        (b"/\xc3\xa9", Ok("/%C3%A9")),
        (b"/a\xff/b", Ok("/a%FF/b")),
        // Paths with queries.
        (b"/a/./b?x=1", Ok("/a/b")),
        (b"/a?", Ok("/a")),
        (b"/a?b?c", Ok("/a")),
        (b"/a?q=%zz", Err(BadEscape)),
        (b"/a?q=%00", Err(ControlByte)),
        (b"/a?q=%2F%5C\\", Ok("/a")),
        (b"/a?q=/../..;", Ok("/a")),
    ];

    #[test]
    fn table_cases() {
        assert!(CASES.len() >= 40);
        for (raw, want) in CASES {
            let got = p(raw);
            let want = want.map(str::to_owned);
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn idempotence_over_accepted_cases() {
        let mut n = 0;
        for (raw, _) in CASES {
            if let Ok(t) = normalize_target(raw, MAX) {
                let again = normalize_target(t.path.as_bytes(), MAX).unwrap();
                assert_eq!(again.path, t.path, "input {:?}", String::from_utf8_lossy(raw));
                assert_eq!(again.query, None);
                n += 1;
            }
        }
        assert!(n >= 30);
    }

    #[test]
    fn query_is_kept_verbatim() {
        let t = normalize_target(b"/search?q=a%20b&x=%2f..%2F;#", MAX);
        assert_eq!(t, Err(Fragment));
        let t = normalize_target(b"/search?q=a%20b", MAX).unwrap();
        assert_eq!(t.path, "/search");
        assert_eq!(t.query.as_deref(), Some("q=a%20b"));
        let t = normalize_target(b"/s?q=%2f..%2F;\\x=%e9", MAX).unwrap();
        assert_eq!(t.query.as_deref(), Some("q=%2f..%2F;\\x=%e9"));
        let t = normalize_target(b"/s?a=1?b=2", MAX).unwrap();
        assert_eq!(t.query.as_deref(), Some("a=1?b=2"));
    }

    #[test]
    fn query_absent_vs_empty() {
        assert_eq!(normalize_target(b"/a", MAX).unwrap().query, None);
        assert_eq!(normalize_target(b"/a?", MAX).unwrap().query.as_deref(), Some(""));
    }

    #[test]
    fn query_utf8_kept_and_invalid_bytes_encoded() {
        let t = normalize_target("/s?q=é".as_bytes(), MAX).unwrap();
        assert_eq!(t.query.as_deref(), Some("q=é"));
        let t = normalize_target(b"/s?q=\xff\xc3\xa9\xc3", MAX).unwrap();
        assert_eq!(t.query.as_deref(), Some("q=%FFé%C3"));
        let t = normalize_target(b"/s?\xe2\x82x", MAX).unwrap();
        assert_eq!(t.query.as_deref(), Some("%E2%82x"));
    }

    #[test]
    fn length_limit() {
        assert_eq!(normalize_target(b"/abc", 4).unwrap().path, "/abc");
        assert_eq!(normalize_target(b"/abcd", 4), Err(TooLong));
        assert_eq!(normalize_target(b"", 0), Err(NotOriginForm));
        let long = vec![b'a'; 9000];
        assert_eq!(normalize_target(&long, MAX), Err(TooLong));
    }

    #[test]
    fn error_precedence_follows_rule_order() {
        assert_eq!(p(b"/a\x01#"), Err(Fragment));
        assert_eq!(p(b"x y"), Err(ControlByte));
        assert_eq!(p(b"/..;/a%zz"), Err(BadEscape));
        assert_eq!(p(b"/a\\b%2F"), Err(EncodedSeparator));
        assert_eq!(p(b"/a\\b?q=%zz"), Err(BadEscape));
        assert_eq!(p(b"/../a\\b"), Err(Backslash));
        assert_eq!(p(b"/..;/../.."), Err(DotSegmentParam));
        assert_eq!(p(b"/../..;"), Err(EscapesRoot));
    }

    #[test]
    fn reasons_and_display() {
        let all = [
            NotOriginForm,
            Fragment,
            ControlByte,
            BadEscape,
            EncodedSeparator,
            Backslash,
            DotSegmentParam,
            EscapesRoot,
            TooLong,
        ];
        for e in all {
            assert!(!e.reason().is_empty());
            assert_eq!(e.to_string(), e.reason());
        }
        assert_eq!(EncodedSeparator.reason(), "encoded '/' or '\\' in path");
    }

    #[test]
    fn segment_prefix_matching() {
        assert!(has_segment_prefix("/users", "/users"));
        assert!(has_segment_prefix("/users/", "/users"));
        assert!(has_segment_prefix("/users/7", "/users"));
        assert!(!has_segment_prefix("/usersx", "/users"));
        assert!(!has_segment_prefix("/users%2F", "/users"));
        assert!(!has_segment_prefix("/user", "/users"));
        assert!(!has_segment_prefix("/admin/users", "/users"));
        assert!(has_segment_prefix("/", "/"));
        assert!(has_segment_prefix("/anything/at/all", "/"));
        assert!(has_segment_prefix("/users/", "/users/"));
        assert!(has_segment_prefix("/users/7", "/users/"));
        assert!(!has_segment_prefix("/users", "/users/"));
        assert!(!has_segment_prefix("/usersx/", "/users/"));
        assert!(has_segment_prefix("/a/b/c", "/a/b"));
        assert!(!has_segment_prefix("/a/bc", "/a/b"));
    }

    #[test]
    fn segment_prefix_on_normalized_attack_paths() {
        // The double-slash and encoded-dot spellings all land inside the prefix policy.
        for raw in [&b"//internal/x"[..], b"/public/../internal/x", b"/%69nternal/x"] {
            let path = p(raw).unwrap();
            assert!(has_segment_prefix(&path, "/internal"), "{path}");
        }
    }

    #[test]
    fn segment_prefix_stripping() {
        assert_eq!(strip_segment_prefix("/users/7", "/users"), "/7");
        assert_eq!(strip_segment_prefix("/users", "/users"), "/");
        assert_eq!(strip_segment_prefix("/users/", "/users"), "/");
        assert_eq!(strip_segment_prefix("/users/7/", "/users"), "/7/");
        assert_eq!(strip_segment_prefix("/users/7", "/users/"), "/7");
        assert_eq!(strip_segment_prefix("/users/", "/users/"), "/");
        assert_eq!(strip_segment_prefix("/a/b", "/"), "/a/b");
        assert_eq!(strip_segment_prefix("/", "/"), "/");
        assert_eq!(strip_segment_prefix("/a/b/c", "/a/b"), "/c");
        // Not a segment prefix: unchanged.
        assert_eq!(strip_segment_prefix("/usersx", "/users"), "/usersx");
        // Results stay canonical.
        for (path, prefix) in [("/users/7/", "/users"), ("/a/b", "/"), ("/x/", "/x/")] {
            let s = strip_segment_prefix(path, prefix);
            assert_eq!(p(s.as_bytes()).unwrap(), s);
        }
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn assert_canonical(raw: &[u8], path: &str) {
        let ctx = String::from_utf8_lossy(raw);
        assert!(path.starts_with('/'), "{ctx:?} -> {path}");
        assert!(!path.contains("//"), "{ctx:?} -> {path}");
        assert!(!path.contains("/./"), "{ctx:?} -> {path}");
        assert!(!path.contains("/../"), "{ctx:?} -> {path}");
        assert!(!path.ends_with("/."), "{ctx:?} -> {path}");
        assert!(!path.ends_with("/.."), "{ctx:?} -> {path}");
        assert!(!path.contains('\\'), "{ctx:?} -> {path}");
        let upper = path.to_ascii_uppercase();
        assert!(!upper.contains("%2F"), "{ctx:?} -> {path}");
        assert!(!upper.contains("%5C"), "{ctx:?} -> {path}");
        let bytes = path.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            assert!(b > 0x20 && b < 0x7F, "{ctx:?} -> {path}");
            if b == b'%' {
                let h = &bytes[i + 1..i + 3];
                assert!(h.iter().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')));
                let v = u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap();
                assert!(!is_unreserved(v), "undecoded unreserved in {path}");
            }
        }
        for seg in path.split('/') {
            let name = seg.split(';').next().unwrap();
            assert!(!(seg.contains(';') && (name == "." || name == "..")));
        }
        let again = normalize_target(bytes, MAX).unwrap();
        assert_eq!(again.path, path, "not idempotent for {ctx:?}");
    }

    #[test]
    fn fuzz_random_targets() {
        const ATOMS: &[&[u8]] = &[
            b"/", b"/", b"/", b".", b".", b"..", b"%", b"%2e", b"%2E", b"%2f", b"%2F", b"%5c", b"%5C",
            b"%3b", b"%3B", b"%41", b"%7e", b"%3a", b"%00", b"%zz", b"%4", b";", b";x=1", b"2", b"e", b"E",
            b"f", b"a", b"b", b"Z", b"\\", b"\xc3", b"\xa9", b"\xff", b"\x80", b"?", b"#", b" ", b"~", b"-",
            b"_", b"//",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut ok, mut err) = (0usize, 0usize);
        let mut buf = Vec::with_capacity(128);
        for _ in 0..20_000 {
            buf.clear();
            if rng.below(8) != 0 {
                buf.push(b'/');
            }
            let n = usize::try_from(rng.below(24)).unwrap();
            for _ in 0..n {
                let r = rng.next();
                if rng.below(5) == 0 {
                    // Occasionally a completely arbitrary byte.
                    buf.push(r.to_le_bytes()[1]);
                } else {
                    let atom = ATOMS[usize::try_from((r >> 8) % 1024).unwrap() % ATOMS.len()];
                    buf.extend_from_slice(atom);
                }
            }
            let max = if rng.below(50) == 0 { 16 } else { MAX };
            match normalize_target(&buf, max) {
                Ok(t) => {
                    ok += 1;
                    assert_canonical(&buf, &t.path);
                    if let Some(q) = &t.query {
                        assert!(!q.contains('#'));
                    }
                }
                Err(e) => {
                    err += 1;
                    assert!(!e.reason().is_empty());
                }
            }
        }
        // Make sure the generator exercises both outcomes meaningfully.
        assert!(ok > 1_000, "ok = {ok}");
        assert!(err > 1_000, "err = {err}");
    }
}
