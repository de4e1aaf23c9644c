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
}
