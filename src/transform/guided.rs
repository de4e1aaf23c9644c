//! Parsing a JSON document only as deep as its rules look, within a memory budget.
//!
//! `Need` is the tree of keys the rules reach. The parser opens the objects and arrays on
//! those keys and keeps every other value as `Doc::Raw`: serde_json still checks it is JSON
//! (scanning it once, without decoding a string or allocating), but it is written back as it
//! came. A rule can therefore only meet raw text as a whole value (removed, kept, moved or
//! replaced), never look into it; `JsonRules::reached_paths` says why that holds for renames.
//!
//! What the upstream sent inside an unopened value reaches the client byte for byte
//! (whitespace, escapes, a repeated key); every object the rules open is read as `bounded`
//! reads it: escapes decoded before keys are compared, a repeated key once (its last value),
//! reserved keys refused, depth within serde_json's limit.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::bounded::{self, Seed, NUMBER_TOKEN};
use super::doc::{Doc, Fields};

/// The keys the rules reach, as a tree (arrays are looked through, as the rules do).
#[derive(Debug, Default, Clone)]
pub struct Need {
    keys: Vec<(String, Need)>,
    /// Open every value below (rules whose paths are too many to follow).
    all: bool,
}

/// A value no rule looks into.
static UNOPENED: Need = Need {
    keys: Vec::new(),
    all: false,
};

impl Need {
    pub fn from_paths<'p>(paths: impl IntoIterator<Item = Vec<&'p str>>) -> Need {
        let mut root = Need::default();
        for path in paths {
            let mut node = &mut root;
            for key in path {
                let at = match node.keys.iter().position(|(name, _)| name == key) {
                    Some(at) => at,
                    None => {
                        node.keys.push((key.to_string(), Need::default()));
                        node.keys.len() - 1
                    }
                };
                node = &mut node.keys[at].1;
            }
        }
        root
    }

    /// Open the whole document, as `bounded` parses it.
    pub fn everything() -> Need {
        Need {
            keys: Vec::new(),
            all: true,
        }
    }

    /// Whether a value here is opened (some rule reaches inside it).
    fn opens(&self) -> bool {
        self.all || !self.keys.is_empty()
    }

    fn child(&self, key: &str) -> &Need {
        if self.all {
            return self;
        }
        self.keys
            .iter()
            .find(|(name, _)| name == key)
            .map_or(&UNOPENED, |(_, need)| need)
    }
}

/// Bytes charged per value in the tree. Charges follow `bounded`'s model value for value
/// (a raw value costs one `Doc`, where `bounded` charges at least one `Value` for it; a
/// borrowed key costs nothing, where `bounded` charges its text), so a document `bounded`
/// accepts within a budget is accepted here too (`tests/fuzz.rs` checks it).
const DOC_COST: usize = std::mem::size_of::<Doc>();

/// Parse `text`, opening what `need` reaches, refusing it once the tree would cost more than
/// `budget` bytes (raw text costs only its place in the tree: it is not copied).
pub fn parse<'a>(text: &'a [u8], budget: usize, need: &Need) -> Result<Doc<'a>, String> {
    let left = Cell::new(budget);
    let mut de = serde_json::Deserializer::from_str(super::bounded::utf8(text)?);
    let doc = Guided {
        need,
        budget: Seed::new(&left),
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(doc)
}

#[derive(Clone, Copy)]
struct Guided<'n, 'b> {
    need: &'n Need,
    budget: Seed<'b>,
}

impl<'de> DeserializeSeed<'de> for Guided<'_, '_> {
    type Value = Doc<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        if self.need.opens() {
            // Charged where the value is known: `bounded`'s scalars, or the container below.
            deserializer.deserialize_any(self)
        } else {
            self.budget.charge::<D::Error>(DOC_COST)?;
            <&RawValue>::deserialize(deserializer).map(Doc::Raw)
        }
    }
}

impl<'de> Visitor<'de> for Guided<'_, '_> {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Doc<'de>, E> {
        self.budget.visit_bool(v).map(Doc::Scalar)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Doc<'de>, E> {
        self.budget.visit_i64(v).map(Doc::Scalar)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Doc<'de>, E> {
        self.budget.visit_u64(v).map(Doc::Scalar)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Doc<'de>, E> {
        self.budget.visit_f64(v).map(Doc::Scalar)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Doc<'de>, E> {
        self.budget.visit_str(v).map(Doc::Scalar)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Doc<'de>, E> {
        self.budget.visit_string(v).map(Doc::Scalar)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Doc<'de>, E> {
        self.budget.visit_unit().map(Doc::Scalar)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Doc<'de>, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        self.budget.charge::<A::Error>(DOC_COST)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            // Growing by doubling may hold up to twice the elements' size.
            if items.len() == items.capacity() {
                self.budget
                    .charge::<A::Error>(items.capacity().max(4) * DOC_COST)?;
            }
            items.push(item);
        }
        Ok(Doc::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        self.budget.charge::<A::Error>(DOC_COST)?;
        let mut fields = Vec::new();
        let mut first = true;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if first && key == NUMBER_TOKEN {
                return self.budget.number(&mut map).map(Doc::Scalar);
            }
            first = false;
            if bounded::reserved_key(&key) {
                return Err(bounded::reserved(&key));
            }
            let owned_text = match &key {
                Cow::Owned(text) => text.len(),
                Cow::Borrowed(_) => 0,
            };
            self.budget.charge::<A::Error>(bounded::ENTRY_COST + owned_text)?;
            let value = map.next_value_seed(Guided {
                need: self.need.child(&key),
                budget: self.budget,
            })?;
            fields.push((key, value));
        }
        Ok(Doc::Object(Fields::from_parsed(fields)))
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::doc::tests::text;
    use serde_json::{json, Value};

    fn need(paths: &[&str]) -> Need {
        Need::from_paths(paths.iter().map(|p| p.split('.').collect()))
    }

    #[test]
    fn opens_only_what_the_rules_reach() {
        let input = br#"{"a": {"x" : [1, 2]}, "b": {"c": "\u0041", "d": {"e": 1}}, "l": [{"c": 1}, 2]}"#;
        let doc = parse(input, 1 << 20, &need(&["b.d", "l.c"])).unwrap();
        let Doc::Object(root) = &doc else {
            panic!("root not opened: {doc:?}");
        };
        assert!(matches!(root.get("a"), Some(Doc::Raw(_))), "a is not on a path");
        let Some(Doc::Object(b)) = root.get("b") else {
            panic!("b not opened");
        };
        assert!(
            matches!(b.get("d"), Some(Doc::Raw(_))),
            "a path's last value stays raw"
        );
        assert!(
            matches!(root.get("l"), Some(Doc::Array(_))),
            "arrays are looked through"
        );
        assert_eq!(
            text(&doc),
            r#"{"a":{"x" : [1, 2]},"b":{"c":"\u0041","d":{"e": 1}},"l":[{"c":1},2]}"#
        );
        let reread: Value = serde_json::from_str(&text(&doc)).unwrap();
        assert_eq!(reread, serde_json::from_slice::<Value>(input).unwrap());
        // Nothing to open: the document stays one raw value.
        let whole = parse(b" [1, {\"a\": 2}] ", 4096, &Need::default()).unwrap();
        assert_eq!(text(&whole), r#"[1, {"a": 2}]"#);
    }

    #[test]
    fn a_document_that_is_not_utf8_is_refused_even_where_left_unopened() {
        // Inside a raw value nothing is opened, yet the bytes go out as they came: they must be
        // text.
        let input = b"{\"a\": {\"x\": \"\xff\"}, \"b\": 1}";
        assert!(parse(input, 1 << 20, &need(&["b"])).is_err());
        assert!(parse(b"{\"a\": 1, \"b\": \"\xc3\"}", 1 << 20, &need(&["a"])).is_err());
    }

    #[test]
    fn costs_no_more_than_bounded() {
        assert!(DOC_COST <= std::mem::size_of::<Value>());
        // Scenario T's document (benches/load/run.sh): found refused once, when the
        // field vectors' growth was charged on top of every value.
        let orders: Vec<String> = (0..9)
            .map(|i| {
                format!(
                    r#"{{"id":{i},"sku":"SKU-00000{i}","qty":{},"card":"4111-1111-1111-000{i}"}}"#,
                    i % 7 + 1
                )
            })
            .collect();
        let doc = format!(
            r#"{{"id":42,"name":"Ann Example","email":"ann@example.com","password":"hunter2","address":{{"street":"1 Main St","city":"Oslo","zip":"0150"}},"orders":[{}]}}"#,
            orders.join(",")
        );
        let budget = bounded::budget_for(doc.len());
        let everything = Need::everything();
        for need in [
            need(&[
                "password",
                "orders.card",
                "id",
                "address.city",
                "city",
                "meta.source",
            ]),
            everything,
        ] {
            assert!(bounded::parse(doc.as_bytes(), budget).is_ok());
            assert!(parse(doc.as_bytes(), budget, &need).is_ok(), "{need:?}");
        }
    }

    #[test]
    fn opened_objects_are_read_as_bounded_reads_them() {
        let rules = need(&["p"]);
        let doc = parse(br#"{"p":1,"p":2,"pass\u0077ord":3,"n":1.50}"#, 4096, &rules).unwrap();
        assert_eq!(text(&doc), r#"{"p":2,"password":3,"n":1.50}"#);
        let reserved = br#"{"$serde_json::private::RawValue":1}"#;
        assert!(parse(reserved, 4096, &rules).unwrap_err().contains("reserved"));
        assert!(parse(br#"{"p":1} x"#, 4096, &rules).is_err());
        assert!(parse(br#"{"p":[1,}"#, 4096, &rules).is_err());
        assert!(
            parse(br#"{"q":[1,}"#, 4096, &rules).is_err(),
            "raw text is checked too"
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes(), 1 << 20, &rules).is_err(), "depth limit");
        let zeros = format!("[{}0]", "0,".repeat(100_000));
        let err = parse(zeros.as_bytes(), bounded::budget_for(zeros.len()), &rules).unwrap_err();
        assert!(err.contains("too large once parsed"), "{err}");
        let scalars = parse(br#"[true,null,"s",-2]"#, 4096, &rules).unwrap();
        assert_eq!(scalars.into_value().unwrap(), json!([true, null, "s", -2]));
    }
}
