//! Percent-decoding of URL components (RFC 3986 §2.1), shared by every reader of query
//! parameters and by the Redis URL: one decoder, so two readers of the same bytes can never
//! disagree about what they say.

/// How to treat what is not a plain byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A malformed escape makes the whole component unusable (`None`).
    Strict,
    /// HTML form encoding: `+` is a space, malformed escapes stay as written.
    Form,
}

/// The decoded bytes; `None` in `Strict` mode for a malformed escape.
pub fn decode(s: &str, mode: Mode) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    while let Some(&c) = b.get(i) {
        match (c, hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            (b'%', _, _) if mode == Mode::Strict => return None,
            (b'+', _, _) if mode == Mode::Form => out.push(b' '),
            _ => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// Strict decoding to UTF-8 text; `None` for a malformed escape or invalid UTF-8.
pub fn decode_str(s: &str) -> Option<String> {
    decode(s, Mode::Strict).and_then(|b| String::from_utf8(b).ok())
}

/// Whether the raw query parameter name `raw_name` names `param`: compared after
/// percent-decoding and without regard to case, because frameworks read `api%5Fkey`, `API_KEY`
/// and `api_key` as one parameter; a reader that compared bytes would miss the spellings an
/// upstream still understands.
///
/// PHP also reads `.`, ` `, `+` and `[` in a name as `_` (`api.key` is `$_GET['api_key']`), so
/// those compare equal to `_` too. A name with a bracketed suffix (`api_key[]`, `api_key[x]`,
/// `api_key%5B%5D`) is an array or map under `api_key` to PHP, Rails and Node's `qs`: it names
/// `api_key` as well.
pub fn names_param(raw_name: &str, param: &str) -> bool {
    let php = |c: char| {
        if matches!(c, '.' | ' ' | '+' | '[') {
            '_'
        } else {
            c.to_ascii_lowercase()
        }
    };
    // Both sides the same way, so a configured name with brackets still names itself.
    let param = base_name(param);
    let same = |name: &str| {
        let name = base_name(name);
        name.len() == param.len() && name.chars().map(php).eq(param.chars().map(php))
    };
    // Without an escape the raw name is the name: no decoding, no allocation.
    if !raw_name.contains('%') {
        return same(raw_name);
    }
    decode_str(raw_name).is_some_and(|n| same(&n))
}

/// The name a framework files a parameter under: PHP drops leading spaces (`+` in a query),
/// Rack reads `[name]` as `name`, and `name[…]` is an array or map under `name` (see
/// [`names_param`]).
fn base_name(name: &str) -> &str {
    let name = name.trim_start_matches([' ', '+']);
    let name = match name.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((inner, _)) if !inner.is_empty() => inner,
        _ => name,
    };
    match name.split_once('[') {
        Some((base, rest)) if rest.contains(']') => base,
        _ => name,
    }
}

/// Append `value` percent-encoded, with only RFC 3986's unreserved characters left as they
/// are: safe as one path segment, one query name or one query value.
pub fn encode_component_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// `name=value` (a bare `name` has an empty value).
pub fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// Whether some `;`-separated piece inside a `&`-separated pair names `param`: some frameworks
/// split on `;` too, so such a pair is read differently by different readers.
pub fn hides_param(pair: &str, param: &str) -> bool {
    pair.split(';')
        .skip(1)
        .any(|piece| names_param(split_pair(piece).0, param))
}

/// `query` without the parameters that name any of `params` (decoded, any case).
pub fn strip_params(query: &str, params: &[&str]) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !params.iter().any(|p| names_param(split_pair(pair).0, p)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_form_decoding() {
        assert_eq!(decode_str("vers%69on"), Some("version".into()));
        assert_eq!(decode_str("a+b"), Some("a+b".into()));
        assert_eq!(decode_str("%zz"), None);
        assert_eq!(decode_str("%4"), None);
        assert_eq!(decode_str("%ff"), None, "not UTF-8");
        assert_eq!(decode("a+b%2", Mode::Form), Some(b"a b%2".to_vec()));
        assert_eq!(decode("%41%2f", Mode::Form), Some(b"A/".to_vec()));
    }

    #[test]
    fn parameter_names_compare_decoded_without_case() {
        for spelling in [
            "api_key",
            "API_KEY",
            "api%5Fkey",
            "Api%5fKey",
            "%61pi_key",
            "api_key[]",
            "api_key%5B%5D",
            "api_key[x]",
            "API.KEY[0]",
            "+api_key",
            "%20api_key",
            "++api_key[]",
            "[api_key]",
        ] {
            assert!(names_param(spelling, "api_key"), "{spelling}");
        }
        for other in ["api_keys", "api_key]", "api[key]x", "xapi_key[]"] {
            assert!(!names_param(other, "api_key"), "{other}");
        }
        assert!(!names_param("api-key", "api_key"));
        for php in ["api.key", "api+key", "api%20key", "api[key"] {
            assert!(names_param(php, "api_key"), "{php}: PHP reads it as api_key");
        }
        assert!(!names_param("api_key%zz", "api_key"));
        assert!(hides_param("a=1;API_KEY=x", "api_key"));
        assert!(!hides_param("a=x;y", "api_key"));
        assert_eq!(
            strip_params("a=1&API_KEY=x&api%5fkey=y&b=", &["api_key"]),
            "a=1&b="
        );
    }
}
