//! Parsing a JSON document into a `serde_json::Value` within a memory budget.
//!
//! A parsed document costs far more than its text: every value is a 32-byte `Value`, every
//! object entry a key `String` plus an index slot, and growing vectors double. `[0,0,0,…]`
//! costs about 16 bytes of tree per byte of text (measured: a 16 MiB body of it took 1.24 GB
//! with plain `serde_json::from_slice`), so `max_body` alone does not bound memory. Here every
//! value is charged what it costs as it is built, and parsing stops when the budget is spent.
//! Depth stays bounded by serde_json's recursion limit (128).

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// serde_json's private name for a number's digits (`arbitrary_precision`).
pub(super) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Whether the gateway may not write `key`: serde_json (`arbitrary_precision`) reads an object
/// whose first key is its private number token as a number, so a document holding it would not
/// read back as written (found by fuzzing).
pub fn reserved_key(key: &str) -> bool {
    key.starts_with("$serde_json::")
}

/// Bytes of tree charged per value (the `Value` itself).
const VALUE_COST: usize = std::mem::size_of::<Value>();
/// Bytes charged per object entry besides its key text and value: the key `String` and the
/// index map's slot (hash and index).
pub(super) const ENTRY_COST: usize = std::mem::size_of::<String>() + 16;

/// How many bytes of tree a document of `text_len` bytes may cost: twelve times its text.
/// Objects of short fields cost about 8.5× (measured by the test below: records of an id, a
/// name and an e-mail address); arrays of small numbers cost 24–40× and are refused unless
/// they are a small part of the document.
pub fn budget_for(text_len: usize) -> usize {
    text_len.saturating_mul(12).max(4096)
}

/// Parse `text`, refusing it once the tree would cost more than `budget` bytes.
pub fn parse(text: &[u8], budget: usize) -> Result<Value, String> {
    let left = Cell::new(budget);
    let mut de = serde_json::Deserializer::from_str(utf8(text)?);
    let value = Seed { left: &left }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// The document as text, checked once. JSON is UTF-8 (RFC 8259 §8.1); parsed from bytes,
/// serde_json checks every string and every raw value it keeps again (a raw value inside
/// another is checked twice): 6.4k instructions per 1 KiB document in scenario T, about 1k
/// this way. Parsed from `&str` it checks nothing more.
pub(super) fn utf8(text: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(text).map_err(|e| format!("the document is not UTF-8: {e}"))
}

/// A budget being spent, and the parser of one `Value` within it (also used by `guided` for
/// the scalars it opens).
#[derive(Clone, Copy)]
pub(super) struct Seed<'a> {
    left: &'a Cell<usize>,
}

impl<'a> Seed<'a> {
    pub(super) fn new(left: &'a Cell<usize>) -> Seed<'a> {
        Seed { left }
    }

    pub(super) fn charge<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes) {
            Some(rest) => {
                self.left.set(rest);
                Ok(())
            }
            None => Err(E::custom("document too large once parsed")),
        }
    }

    /// With `arbitrary_precision`, serde_json hands a number over as a one-entry map under
    /// `NUMBER_TOKEN`, its digits as the value: read them, keeping them exactly.
    pub(super) fn number<'de, A: MapAccess<'de>>(&self, map: &mut A) -> Result<Value, A::Error> {
        let digits: String = map.next_value()?;
        self.charge::<A::Error>(digits.len())?;
        digits
            .parse::<Number>()
            .map(Value::Number)
            .map_err(A::Error::custom)
    }
}

/// The error for a key the gateway may not write back (`reserved_key`).
pub(super) fn reserved<E: serde::de::Error>(key: &str) -> E {
    E::custom(format!("the key `{key}` is reserved"))
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.charge(VALUE_COST)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.charge(VALUE_COST)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.charge(VALUE_COST)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.charge(VALUE_COST)?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(VALUE_COST + v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.charge(VALUE_COST + v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.charge(VALUE_COST)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.charge::<A::Error>(VALUE_COST)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            // Growing by doubling may hold up to twice the elements' size.
            if items.len() == items.capacity() {
                self.charge::<A::Error>(items.capacity().max(4) * VALUE_COST)?;
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.charge::<A::Error>(VALUE_COST)?;
        let mut out = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if first && key == NUMBER_TOKEN {
                return self.number(&mut map);
            }
            first = false;
            // Written back, such a key would make the document read as a number (or not at
            // all) by the next serde_json: refused, like the rules that would name it.
            if reserved_key(&key) {
                return Err(reserved(&key));
            }
            self.charge::<A::Error>(ENTRY_COST + key.len())?;
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json() {
        for text in [
            r#"{"a":1,"b":[true,null,"x",-2,1.5],"c":{"d":"e"}}"#,
            r#"[1,2,3]"#,
            r#""s""#,
            r#"{"pass\u0077ord":1,"password":2}"#,
            r#"{"big":12345678901234567890123,"f":1.50,"e":1E2,"n":-0}"#,
        ] {
            let ours = parse(text.as_bytes(), budget_for(text.len())).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
        }
        let exact = parse(br#"[12345678901234567890123,1.50,1E2]"#, 4096).unwrap();
        assert_eq!(exact.to_string(), "[12345678901234567890123,1.50,1e+2]");
        assert!(parse(b"{\"a\":1} trailing", 4096).is_err());
        assert!(parse(b"{\"a\":", 4096).is_err());
    }

    #[test]
    fn a_document_that_is_not_utf8_is_refused() {
        for text in [
            b"{\"a\":\"\xff\"}".as_slice(),
            b"{\"\xc0\xaf\":1}",
            b"[\"\xed\xa0\x80\"]",
            b"{\"a\":1} \x80",
        ] {
            assert!(serde_json::from_slice::<Value>(text).is_err());
            assert!(parse(text, 1 << 20).is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_document_that_would_cost_too_much_is_refused() {
        let zeros = format!("[{}0]", "0,".repeat(100_000));
        let err = parse(zeros.as_bytes(), budget_for(zeros.len())).unwrap_err();
        assert!(err.contains("too large once parsed"), "{err}");
        let records: Vec<String> = (0..2000)
            .map(|i| format!(r#"{{"id":{i},"name":"user number {i}","email":"u{i}@example.com"}}"#))
            .collect();
        let ordinary = format!("[{}]", records.join(","));
        assert!(parse(ordinary.as_bytes(), budget_for(ordinary.len())).is_ok());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            parse(deep.as_bytes(), 1 << 20).is_err(),
            "serde_json's depth limit holds"
        );
    }
}
