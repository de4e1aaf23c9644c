//! The document the JSON rules work on: parsed where a rule looks, raw text everywhere else.
//!
//! A transform touches a few paths of a document; parsing the rest into `serde_json::Value`s
//! (a `String` per string, a hashed key per field) and writing it back was most of a
//! transform's cost (about 67k of 90k instructions for the 1 KiB document of scenario T). A
//! `Doc` keeps every value no rule can reach as the exact text the upstream (or client) sent,
//! checked to be JSON but not decoded, and writes it back byte for byte.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON value, parsed as far as the rules need it. `Scalar` never holds an object or an
/// array (those are `Object` and `Array`, or `Raw` where no rule looks).
#[derive(Debug, Clone)]
pub enum Doc<'a> {
    Object(Fields<'a>),
    Array(Vec<Doc<'a>>),
    /// A string, number, boolean or null the parser met on a rule's path, or a value a rule set.
    Scalar(Value),
    /// A value no rule looks inside: the text as it arrived (valid JSON, not re-encoded).
    Raw(&'a RawValue),
}

/// An object's fields in document order, each key once (a repeated key keeps its first
/// position and its last value, as `serde_json::Map` with `preserve_order` does).
///
/// Lookups are linear: the objects a rule reaches are a record's fields, and one pass over
/// them costs less than hashing each key (SipHash) into an index as `serde_json::Map` does.
/// Repeated keys are merged once, after parsing, through a hash map when an object is large.
#[derive(Debug, Clone, Default)]
pub struct Fields<'a>(Vec<(Cow<'a, str>, Doc<'a>)>);

/// Up to this many fields, repeated keys are found by comparing every pair.
const PAIRWISE_DEDUP_MAX: usize = 16;

impl<'a> Fields<'a> {
    /// The fields as parsed, repeated keys merged.
    pub fn from_parsed(mut entries: Vec<(Cow<'a, str>, Doc<'a>)>) -> Fields<'a> {
        let Some(first) = first_occurrences(&entries) else {
            return Fields(entries);
        };
        let mut slot = vec![usize::MAX; entries.len()];
        let mut kept: Vec<(Cow<'a, str>, Doc<'a>)> = Vec::with_capacity(entries.len());
        for (i, (key, value)) in entries.drain(..).enumerate() {
            let at = first[i];
            if at == i {
                slot[i] = kept.len();
                kept.push((key, value));
            } else if let Some(entry) = kept.get_mut(slot[at]) {
                entry.1 = value;
            }
        }
        Fields(kept)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }

    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Doc<'a>> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Remove `key`, keeping the other fields' order.
    pub fn shift_remove(&mut self, key: &str) -> Option<Doc<'a>> {
        let at = self.position(key)?;
        Some(self.0.remove(at).1)
    }

    /// The value under `key`, added at the end as `null` when absent.
    pub fn get_or_insert_null(&mut self, key: &str) -> &mut Doc<'a> {
        let at = match self.position(key) {
            Some(at) => at,
            None => {
                self.0
                    .push((Cow::Owned(key.to_string()), Doc::Scalar(Value::Null)));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// Give the field `from` the name `to`, in its place; an existing `to` is replaced.
    pub fn rename(&mut self, from: &str, to: &str) {
        if from == to || !self.contains_key(from) {
            return;
        }
        self.shift_remove(to);
        if let Some(at) = self.position(from) {
            self.0[at].0 = Cow::Owned(to.to_string());
        }
    }

    /// Set `key` to `value`, in place when present, at the end when not.
    pub fn insert(&mut self, key: Cow<'a, str>, value: Doc<'a>) {
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Doc<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Keep the fields `keep` returns a value for, in order.
    pub fn filter_map(self, mut keep: impl FnMut(&str, Doc<'a>) -> Option<Doc<'a>>) -> Fields<'a> {
        Fields(
            self.0
                .into_iter()
                .filter_map(|(k, v)| keep(&k, v).map(|v| (k, v)))
                .collect(),
        )
    }
}

/// For each entry, the index of the first entry with its key; `None` when every key is unique
/// (the usual case, which then costs no allocation).
fn first_occurrences(entries: &[(Cow<'_, str>, Doc<'_>)]) -> Option<Vec<usize>> {
    let n = entries.len();
    if n <= PAIRWISE_DEDUP_MAX {
        let repeated = (1..n).any(|i| entries[..i].iter().any(|(k, _)| *k == entries[i].0));
        if !repeated {
            return None;
        }
        return Some(
            (0..n)
                .map(|i| {
                    entries[..i]
                        .iter()
                        .position(|(k, _)| *k == entries[i].0)
                        .unwrap_or(i)
                })
                .collect(),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    let mut repeated = false;
    for (i, (key, _)) in entries.iter().enumerate() {
        let at = *seen.entry(key.as_ref()).or_insert(i);
        repeated |= at != i;
        first.push(at);
    }
    repeated.then_some(first)
}

impl<'a> Doc<'a> {
    pub fn null() -> Doc<'a> {
        Doc::Scalar(Value::Null)
    }

    pub fn empty_object() -> Doc<'a> {
        Doc::Object(Fields::default())
    }

    /// Whether this is an object or an array the parser opened (raw text is never looked into:
    /// the parser opens every object and array on a rule's path).
    pub fn is_container(&self) -> bool {
        matches!(self, Doc::Object(_) | Doc::Array(_))
    }

    /// A `Value` as a document, every object and array opened.
    pub fn from_value(value: Value) -> Doc<'static> {
        match value {
            Value::Object(map) => Doc::Object(Fields(
                map.into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Doc::from_value(v)))
                    .collect(),
            )),
            Value::Array(items) => Doc::Array(items.into_iter().map(Doc::from_value).collect()),
            scalar => Doc::Scalar(scalar),
        }
    }

    /// Back to a `Value`. Raw text is read with serde_json (documents made by `from_value`
    /// hold none).
    pub fn into_value(self) -> Result<Value, String> {
        Ok(match self {
            Doc::Object(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (k, v) in fields.0 {
                    map.insert(k.into_owned(), v.into_value()?);
                }
                Value::Object(map)
            }
            Doc::Array(items) => {
                Value::Array(items.into_iter().map(Doc::into_value).collect::<Result<_, _>>()?)
            }
            Doc::Scalar(value) => value,
            Doc::Raw(raw) => serde_json::from_str(raw.get()).map_err(|e| e.to_string())?,
        })
    }

    /// Bytes of tree this value holds (raw text is shared, not counted: the writer's limit
    /// bounds what copies of it produce). What a rule's copy of the value costs.
    pub fn weight(&self) -> usize {
        let own = std::mem::size_of::<Doc>();
        own + match self {
            Doc::Object(fields) => fields
                .0
                .iter()
                .map(|(k, v)| k.len() + std::mem::size_of::<Cow<str>>() + v.weight())
                .sum(),
            Doc::Array(items) => items.iter().map(Doc::weight).sum(),
            Doc::Scalar(Value::String(text)) => text.len(),
            // `arbitrary_precision`: a number's digits are a `String`, copied with it.
            Doc::Scalar(Value::Number(n)) => n.as_str().len(),
            Doc::Scalar(_) | Doc::Raw(_) => 0,
        }
    }

    /// Append the document's JSON text to `out`: opened values compactly, raw text as it came.
    /// Refused once `out` would exceed `limit` bytes: copies made by the rules (a renamed value
    /// set into every element of an array) could otherwise multiply a small body without end.
    pub fn write(&self, out: &mut Vec<u8>, limit: usize) -> Result<(), WriteError> {
        within(out, limit)?;
        match self {
            Doc::Object(fields) => {
                out.push(b'{');
                for (i, (key, value)) in fields.0.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key.as_ref())?;
                    out.push(b':');
                    within(out, limit)?;
                    value.write(out, limit)?;
                }
                out.push(b'}');
            }
            Doc::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out, limit)?;
                }
                out.push(b']');
            }
            Doc::Scalar(value) => {
                serde_json::to_writer(&mut *out, value)?;
                within(out, limit)?;
            }
            Doc::Raw(raw) => {
                if out.len().saturating_add(raw.get().len()) > limit {
                    return Err(WriteError::TooLarge);
                }
                out.extend_from_slice(raw.get().as_bytes())
            }
        }
        Ok(())
    }
}

fn within(out: &[u8], limit: usize) -> Result<(), WriteError> {
    if out.len() > limit {
        return Err(WriteError::TooLarge);
    }
    Ok(())
}

/// Why a document was not written.
#[derive(Debug)]
pub enum WriteError {
    /// More than the limit.
    TooLarge,
    /// serde_json could not write a scalar (not expected: writing to memory).
    Json(serde_json::Error),
}

impl From<serde_json::Error> for WriteError {
    fn from(e: serde_json::Error) -> WriteError {
        WriteError::Json(e)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// The document's text, without a limit (shared with `guided`'s tests).
    pub(in crate::transform) fn text(doc: &Doc) -> String {
        let mut out = Vec::new();
        doc.write(&mut out, usize::MAX).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn repeated_keys_keep_the_first_place_and_the_last_value() {
        for n in [3, PAIRWISE_DEDUP_MAX + 5] {
            let mut entries: Vec<(Cow<str>, Doc)> = (0..n)
                .map(|i| (Cow::Owned(format!("k{i}")), Doc::Scalar(json!(i))))
                .collect();
            entries.push((Cow::Borrowed("k1"), Doc::Scalar(json!("last"))));
            entries.push((Cow::Borrowed("k0"), Doc::Scalar(json!("zero"))));
            let fields = Fields::from_parsed(entries);
            assert_eq!(fields.len(), n);
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k).collect();
            assert_eq!(keys[..2], ["k0", "k1"]);
            assert_eq!(fields.get("k1").map(text).as_deref(), Some(r#""last""#));
            assert_eq!(fields.get("k0").map(text).as_deref(), Some(r#""zero""#));
        }
    }

    #[test]
    fn raw_text_is_written_as_it_came_and_the_rest_compactly() {
        let raw: &RawValue = serde_json::from_str(r#"{ "b" : [1, 2.50] }"#).unwrap();
        let mut fields = Fields::default();
        fields.insert(Cow::Borrowed("a\"q"), Doc::Raw(raw));
        fields.insert(Cow::Borrowed("n"), Doc::Scalar(json!("x\u{1}")));
        let doc = Doc::Array(vec![Doc::Object(fields), Doc::null()]);
        assert_eq!(text(&doc), r#"[{"a\"q":{ "b" : [1, 2.50] },"n":"x\u0001"},null]"#);
        let expected: Value =
            serde_json::from_str(r#"[{"a\"q":{"b":[1,2.50]},"n":"x\u0001"},null]"#).unwrap();
        assert_eq!(doc.into_value().unwrap(), expected);
    }

    #[test]
    fn writing_stops_at_the_limit() {
        let raw: &RawValue = serde_json::from_str(r#""0123456789""#).unwrap();
        let doc = Doc::Array(vec![Doc::Raw(raw); 100]);
        let mut out = Vec::new();
        assert!(matches!(doc.write(&mut out, 500), Err(WriteError::TooLarge)));
        assert!(out.len() <= 500, "wrote {} bytes", out.len());
        out.clear();
        assert!(doc.write(&mut out, 1301).is_ok());
        assert_eq!(out.len(), 1 + 100 * 12 + 99 + 1);
    }

    #[test]
    fn rename_and_insert_keep_places() {
        let mut fields = match Doc::from_value(json!({"a": 1, "b": 2, "c": 3})) {
            Doc::Object(f) => f,
            _ => unreachable!(),
        };
        fields.rename("a", "c");
        fields.insert(Cow::Borrowed("b"), Doc::Scalar(json!(9)));
        *fields.get_or_insert_null("d") = Doc::Scalar(json!(4));
        assert_eq!(text(&Doc::Object(fields)), r#"{"c":1,"b":9,"d":4}"#);
    }
}
