//! JSON document rules over a `Doc` (parsed as far as the rules look, see `guided`), no I/O,
//! shared by response and request transformation and by aggregation (on a `Value`).
//!
//! Operations run in one fixed order: `target` → `allow`/`deny` → `rename` → `set` → `wrap`.
//!
//! Paths are dot-separated keys (`address.city`); `[]` after a key (`orders[].id`) steps into
//! every element of that array. A key met by an array applies to every element as well, so
//! `orders.card` and `orders[].card` mean the same and a deny list never misses an element
//! because the path forgot its `[]`; `[]` met by an object steps into it (an upstream that sent
//! one record where a list was expected still has it filtered). A document whose root is an array is therefore
//! transformed element by element. Keys compare after JSON decoding (escapes resolved, a
//! repeated key is one key: the last value wins), exactly and case-sensitively.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde_json::Value;

use super::doc::{Doc, Fields};
use super::guided::Need;

/// Most steps a path may have; deeper rules are a configuration mistake, not a document.
pub const MAX_PATH_STEPS: usize = 32;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    /// Every element of an array.
    Each,
}

/// A parsed dot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parse `a.b[].c`. Keys are non-empty and hold no `.`, `[` or `]`; a path ends in a key.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        if text.is_empty() {
            return Err("a path may not be empty".into());
        }
        let mut steps = Vec::new();
        for segment in text.split('.') {
            let (key, each) = match segment.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (segment, false),
            };
            if key.is_empty() {
                return Err(format!("`{text}` has an empty key (write `a.b`, `items[].id`)"));
            }
            if key.contains(['[', ']']) {
                return Err(format!(
                    "`{text}`: `[]` may only follow a key, as in `items[].id`"
                ));
            }
            if super::bounded::reserved_key(key) {
                return Err(format!(
                    "`{text}`: keys starting with `$serde_json::` are reserved"
                ));
            }
            steps.push(Step::Key(key.to_string()));
            if each {
                steps.push(Step::Each);
            }
        }
        if steps.last() == Some(&Step::Each) {
            return Err(format!(
                "`{text}` ends in `[]`: name the array itself, or a key of its elements"
            ));
        }
        if steps.len() > MAX_PATH_STEPS {
            return Err(format!("`{text}` has more than {MAX_PATH_STEPS} steps"));
        }
        Ok(JsonPath(steps))
    }

    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    pub fn has_each(&self) -> bool {
        self.0.contains(&Step::Each)
    }

    /// Whether `self` is `other` or lies inside it (`a.b.c` inside `a.b`), reading `[]` and
    /// a plain key as the same step.
    pub fn within(&self, other: &JsonPath) -> bool {
        let keys = |p: &JsonPath| -> Vec<String> {
            p.0.iter()
                .filter_map(|s| match s {
                    Step::Key(k) => Some(k.clone()),
                    Step::Each => None,
                })
                .collect()
        };
        let (mine, theirs) = (keys(self), keys(other));
        mine.len() >= theirs.len() && mine[..theirs.len()] == theirs[..]
    }

    /// The steps without the last key, and the last key.
    fn split_last(&self) -> Option<(&[Step], &str)> {
        match self.0.split_last() {
            Some((Step::Key(k), parent)) => Some((parent, k)),
            _ => None,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in &self.0 {
            match step {
                Step::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Step::Each => f.write_str("[]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// The compiled rules of one `transform.response` or `transform.request` block.
#[derive(Debug, Clone, Default)]
pub struct JsonRules {
    pub target: Option<JsonPath>,
    pub allow: Vec<JsonPath>,
    pub deny: Vec<JsonPath>,
    pub rename: Vec<(JsonPath, JsonPath)>,
    pub set: Vec<(JsonPath, Value)>,
    pub wrap: Option<String>,
    /// `allow` as a tree, built on first use and then shared by every request (the rules
    /// live in the immutable snapshot).
    pub allow_tree: std::sync::OnceLock<AllowTree>,
    /// What of a document the rules look at (`guided`): built when the configuration is
    /// compiled (`config::transform_schema`), or on first use for rules built in code.
    pub need: std::sync::OnceLock<Need>,
}

/// Why a document could not be transformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `target` names a value the document does not have.
    TargetMissing,
    /// Raw text in the document did not read back as a `Value` (`apply` on a `Value` never
    /// meets raw text; the variant keeps that conversion free of panics).
    Unreadable(String),
    /// The copies the rules make (a value renamed or set into every element of an array)
    /// would cost more than `copy_limit` allows.
    TooLarge,
}

/// Most paths `JsonRules::need` follows; beyond them (renames chained through each other's
/// destinations double the list each) every value is opened instead.
const MAX_REACHED_PATHS: usize = 1024;

/// Bytes the rules' copies, and a written document, may reach for a document of `size` bytes:
/// the parser's budget for it plus 1 MiB for what `set` adds.
pub fn copy_limit(size: usize) -> usize {
    super::bounded::budget_for(size).saturating_add(1 << 20)
}

impl JsonRules {
    /// Whether the rules remove data (a failure must then not pass the original on).
    pub fn filters(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty() || self.target.is_some()
    }

    /// The rules applied to a parsed `Value` (aggregation, which merges parsed parts).
    pub fn apply(&self, doc: Value) -> Result<Value, Failure> {
        let doc = Doc::from_value(doc);
        let limit = copy_limit(doc.weight());
        self.apply_doc(doc, limit)?
            .into_value()
            .map_err(Failure::Unreadable)
    }

    /// What the parser must open for these rules: everything else may stay raw text.
    pub fn need(&self) -> &Need {
        self.need.get_or_init(|| match self.reached_paths() {
            Some(paths) => Need::from_paths(paths),
            None => Need::everything(),
        })
    }

    /// Every path (keys only: arrays are looked through) whose value a rule reads, removes,
    /// replaces or steps into, as a path of the document the rules are given.
    ///
    /// A rename moves a value, so a later rename's or `set`'s path under its destination reads
    /// the source too: `rename: {a: b}` then `set: {b.c: 1}` sets `c` inside what was `a`,
    /// which must then be opened (`a.c` is added). Rules after a `target` are relative to it.
    /// `None` past `MAX_REACHED_PATHS`.
    fn reached_paths(&self) -> Option<Vec<Vec<&str>>> {
        fn keys(path: &JsonPath) -> Vec<&str> {
            path.steps()
                .iter()
                .filter_map(|step| match step {
                    Step::Key(k) => Some(k.as_str()),
                    Step::Each => None,
                })
                .collect()
        }
        let mut paths: Vec<Vec<&str>> = self.set.iter().map(|(p, _)| keys(p)).collect();
        for (from, to) in self.rename.iter().rev() {
            let (from, to) = (keys(from), keys(to));
            let moved: Vec<Vec<&str>> = paths
                .iter()
                .filter(|p| p.len() > to.len() && p.starts_with(&to))
                .map(|p| from.iter().chain(&p[to.len()..]).copied().collect())
                .collect();
            paths.extend(moved);
            paths.push(from);
            paths.push(to);
            if paths.len() > MAX_REACHED_PATHS {
                return None;
            }
        }
        paths.extend(self.deny.iter().map(keys));
        paths.extend(self.allow.iter().map(keys));
        let Some(target) = &self.target else {
            return Some(paths);
        };
        let base = keys(target);
        let mut out: Vec<Vec<&str>> = paths
            .into_iter()
            .map(|p| base.iter().chain(&p).copied().collect())
            .collect();
        out.push(base);
        Some(out)
    }

    /// The rules applied to a document parsed as far as `need()` asks (or further); the
    /// copies they make may cost `copy_limit` bytes of tree (see `copy_limit`).
    pub fn apply_doc<'a>(&self, mut doc: Doc<'a>, copy_limit: usize) -> Result<Doc<'a>, Failure> {
        let left = Cell::new(copy_limit);
        if let Some(target) = &self.target {
            doc = take(&mut doc, target.steps()).ok_or(Failure::TargetMissing)?;
        }
        if !self.allow.is_empty() {
            let tree = self.allow_tree.get_or_init(|| AllowTree::build(&self.allow));
            doc = tree.keep(doc).unwrap_or_else(Doc::null);
        }
        for path in &self.deny {
            if let Some((parent, key)) = path.split_last() {
                for_each_object(&mut doc, parent, &mut |obj| {
                    obj.shift_remove(key);
                });
            }
        }
        for (from, to) in &self.rename {
            rename(&mut doc, from, to, &left)?;
        }
        for (path, value) in &self.set {
            let value = Doc::from_value(value.clone());
            let weight = value.weight();
            set_with(&mut doc, path.steps(), &left, &mut || {
                spend(&left, weight).then(|| value.clone())
            })?;
        }
        if let Some(key) = &self.wrap {
            let mut outer = Fields::default();
            outer.insert(Cow::Owned(key.clone()), doc);
            doc = Doc::Object(outer);
        }
        Ok(doc)
    }
}

/// Move the value at `steps` (keys through objects only) out of `doc`.
fn take<'a>(doc: &mut Doc<'a>, steps: &[Step]) -> Option<Doc<'a>> {
    let (last, parent) = steps.split_last()?;
    let mut here = doc;
    for step in parent {
        here = match (step, here) {
            (Step::Key(k), Doc::Object(fields)) => fields.get_mut(k)?,
            _ => return None,
        };
    }
    match (last, here) {
        (Step::Key(k), Doc::Object(fields)) => fields.shift_remove(k),
        _ => None,
    }
}

/// Call `f` on every object reached by `steps`: a key steps into an object, `[]` into every
/// element of an array, and a key met by an array applies to each element.
fn for_each_object<'a>(value: &mut Doc<'a>, steps: &[Step], f: &mut dyn FnMut(&mut Fields<'a>)) {
    match (steps.first(), value) {
        (None, Doc::Object(fields)) => f(fields),
        (None, Doc::Array(items)) => {
            for item in items {
                for_each_object(item, steps, f);
            }
        }
        (Some(Step::Each), Doc::Array(items)) => {
            for item in items {
                for_each_object(item, &steps[1..], f);
            }
        }
        // One record where a list was expected: still filtered.
        (Some(Step::Each), record @ Doc::Object(_)) => for_each_object(record, &steps[1..], f),
        (Some(Step::Key(_)), Doc::Array(items)) => {
            for item in items {
                for_each_object(item, steps, f);
            }
        }
        (Some(Step::Key(k)), Doc::Object(fields)) => {
            if let Some(child) = fields.get_mut(k) {
                for_each_object(child, &steps[1..], f);
            }
        }
        _ => {}
    }
}

/// What one step of a `set` or a moved value's path may allocate: an object's first four field
/// slots (a vector's first growth), counted whether or not the object is new.
const PLACE_COST: usize = 4 * std::mem::size_of::<(Cow<str>, Doc)>();

/// Take `bytes` from what the rules' copies may still cost; `false` when that is spent.
fn spend(left: &Cell<usize>, bytes: usize) -> bool {
    match left.get().checked_sub(bytes) {
        Some(rest) => {
            left.set(rest);
            true
        }
        None => false,
    }
}

/// Rename within the deepest object both paths share: `a.b` → `a.c` renames inside every `a`
/// (in place, keeping the key's position); `address.city` → `city` moves the value to the
/// root. The destination is replaced if present.
fn rename(doc: &mut Doc<'_>, from: &JsonPath, to: &JsonPath, left: &Cell<usize>) -> Result<(), Failure> {
    let (from, to) = (from.steps(), to.steps());
    let shared = from
        .iter()
        .zip(to)
        .take_while(|(a, b)| a == b)
        .count()
        .min(from.len() - 1)
        .min(to.len() - 1);
    let (rel_from, rel_to) = (&from[shared..], &to[shared..]);
    let mut outcome = Ok(());
    for_each_object(doc, &from[..shared], &mut |obj| {
        if outcome.is_err() {
            return;
        }
        if let ([Step::Key(a)], [Step::Key(b)]) = (rel_from, rel_to) {
            obj.rename(a, b);
            return;
        }
        let mut holder = Doc::Object(std::mem::take(obj));
        if let Some(value) = take(&mut holder, rel_from) {
            let weight = value.weight();
            outcome = set_with(&mut holder, rel_to, left, &mut || {
                spend(left, weight).then(|| value.clone())
            });
        }
        if let Doc::Object(fields) = holder {
            *obj = fields;
        }
    });
    outcome
}

/// Set the value `value` makes at `steps`, once for each place they reach (through arrays,
/// more than one), creating objects on the way (a scalar in the way is replaced). `value`
/// gives `None` when its copies are spent; the objects and keys made on the way are charged to
/// `left` too.
fn set_with<'a>(
    doc: &mut Doc<'a>,
    steps: &[Step],
    left: &Cell<usize>,
    value: &mut dyn FnMut() -> Option<Doc<'a>>,
) -> Result<(), Failure> {
    match (steps.first(), &mut *doc) {
        (None, _) => *doc = value().ok_or(Failure::TooLarge)?,
        (Some(Step::Each), Doc::Array(items)) | (Some(Step::Key(_)), Doc::Array(items)) => {
            let rest = if steps[0] == Step::Each {
                &steps[1..]
            } else {
                steps
            };
            for item in items {
                set_with(item, rest, left, value)?;
            }
        }
        (Some(Step::Each), _) => {}
        (Some(Step::Key(k)), _) => {
            // A new object's first fields and this key's slot, whether or not they are new.
            if !spend(left, PLACE_COST + k.len()) {
                return Err(Failure::TooLarge);
            }
            if !matches!(doc, Doc::Object(_)) {
                *doc = Doc::empty_object();
            }
            if let Doc::Object(fields) = doc {
                let child = fields.get_or_insert_null(k);
                if steps.len() > 1 && !child.is_container() {
                    *child = Doc::empty_object();
                }
                set_with(child, &steps[1..], left, value)?;
            }
        }
    }
    Ok(())
}

/// The allow list as a tree: what to keep under each key.
#[derive(Debug, Default, Clone)]
pub struct AllowTree {
    /// Keep this value whole.
    whole: bool,
    keys: Vec<(String, AllowTree)>,
    each: Option<Box<AllowTree>>,
}

impl AllowTree {
    fn build(paths: &[JsonPath]) -> AllowTree {
        let mut root = AllowTree::default();
        for path in paths {
            let mut node = &mut root;
            for step in path.steps() {
                node = match step {
                    Step::Key(k) => {
                        let at = match node.keys.iter().position(|(name, _)| name == k) {
                            Some(i) => i,
                            None => {
                                node.keys.push((k.clone(), AllowTree::default()));
                                node.keys.len() - 1
                            }
                        };
                        &mut node.keys[at].1
                    }
                    Step::Each => node.each.get_or_insert_with(Default::default),
                };
            }
            node.whole = true;
        }
        root
    }

    /// What of `value` the tree keeps; `None` when nothing (the key is then omitted).
    fn keep<'a>(&self, value: Doc<'a>) -> Option<Doc<'a>> {
        if self.whole {
            return Some(value);
        }
        match value {
            Doc::Object(fields) => Some(Doc::Object(fields.filter_map(|k, v| {
                let sub = self.keys.iter().find(|(name, _)| name == k)?;
                sub.1.keep(v)
            }))),
            Doc::Array(items) => {
                let per_item = self.each.as_deref().unwrap_or(self);
                Some(Doc::Array(
                    items.into_iter().filter_map(|item| per_item.keep(item)).collect(),
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(list: &[&str]) -> Vec<JsonPath> {
        list.iter().map(|p| JsonPath::parse(p).unwrap()).collect()
    }

    fn doc() -> Value {
        json!({
            "id": 7, "name": "Ann", "password": "hunter2", "internal": {"x": 1},
            "address": {"city": "Oslo", "zip": "0150"},
            "orders": [{"id": 1, "card": "4111"}, {"id": 2, "card": "5500"}]
        })
    }

    #[test]
    fn paths_parse_and_print() {
        for p in ["a", "a.b", "orders[].id", "a[].b[].c"] {
            assert_eq!(JsonPath::parse(p).unwrap().to_string(), p);
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a[]", "a[0].b", "[].a", "a[x]"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert!(JsonPath::parse("a.b.c")
            .unwrap()
            .within(&JsonPath::parse("a.b").unwrap()));
        assert!(JsonPath::parse("a[].b")
            .unwrap()
            .within(&JsonPath::parse("a").unwrap()));
        assert!(!JsonPath::parse("ab")
            .unwrap()
            .within(&JsonPath::parse("a").unwrap()));
    }

    #[test]
    fn deny_reaches_nested_keys_and_array_elements() {
        let rules = JsonRules {
            deny: paths(&["password", "internal", "orders[].card", "address.zip"]),
            ..Default::default()
        };
        let out = rules.apply(doc()).unwrap();
        assert_eq!(
            out,
            json!({"id": 7, "name": "Ann", "address": {"city": "Oslo"},
                   "orders": [{"id": 1}, {"id": 2}]})
        );
        // Without `[]`, a key met by an array still applies to every element.
        let rules = JsonRules {
            deny: paths(&["orders.card"]),
            ..Default::default()
        };
        assert!(!rules.apply(doc()).unwrap().to_string().contains("4111"));
    }

    #[test]
    fn allow_keeps_only_listed_paths_in_document_order() {
        let rules = JsonRules {
            allow: paths(&["orders[].id", "id", "address.city"]),
            ..Default::default()
        };
        let out = rules.apply(doc()).unwrap();
        assert_eq!(
            out.to_string(),
            r#"{"id":7,"address":{"city":"Oslo"},"orders":[{"id":1},{"id":2}]}"#
        );
        // A scalar where the path expects an object is left out (allow fails closed).
        let rules = JsonRules {
            allow: paths(&["name.first"]),
            ..Default::default()
        };
        assert_eq!(rules.apply(doc()).unwrap(), json!({}));
    }

    #[test]
    fn rename_set_wrap_in_order() {
        let rules = JsonRules {
            target: None,
            allow: vec![],
            deny: paths(&["password", "internal", "orders"]),
            rename: vec![
                (
                    JsonPath::parse("id").unwrap(),
                    JsonPath::parse("user_id").unwrap(),
                ),
                (
                    JsonPath::parse("address.city").unwrap(),
                    JsonPath::parse("city").unwrap(),
                ),
            ],
            set: vec![
                (JsonPath::parse("meta.source").unwrap(), json!("users-api")),
                (JsonPath::parse("meta.version").unwrap(), json!(2)),
            ],
            wrap: Some("user".into()),
            ..Default::default()
        };
        let out = rules.apply(doc()).unwrap();
        assert_eq!(
            out.to_string(),
            r#"{"user":{"user_id":7,"name":"Ann","address":{"zip":"0150"},"city":"Oslo","meta":{"source":"users-api","version":2}}}"#
        );
    }

    #[test]
    fn a_record_where_a_list_was_expected_is_still_filtered() {
        let rules = JsonRules {
            deny: paths(&["orders[].card"]),
            ..Default::default()
        };
        let out = rules.apply(json!({"orders": {"id": 1, "card": "4111"}})).unwrap();
        assert_eq!(out, json!({"orders": {"id": 1}}));
    }

    #[test]
    fn copies_into_every_element_are_bounded() {
        let rules = JsonRules {
            rename: vec![(
                JsonPath::parse("mail").unwrap(),
                JsonPath::parse("contact.email").unwrap(),
            )],
            ..Default::default()
        };
        let small = json!({"mail": "m", "contact": [{}, {}]});
        assert_eq!(
            rules.apply(small).unwrap(),
            json!({"contact": [{"email": "m"}, {"email": "m"}]})
        );
        let many = vec![json!({}); 20_000];
        let big = json!({"mail": "x".repeat(100_000), "contact": many.clone()});
        assert_eq!(rules.apply(big), Err(Failure::TooLarge));
        // A number's digits are copied with it (`arbitrary_precision`): charged too.
        let digits: Value = serde_json::from_str(&"7".repeat(100_000)).unwrap();
        let big = json!({"mail": digits, "contact": many.clone()});
        assert_eq!(rules.apply(big), Err(Failure::TooLarge));
        // A `set` through `[]` is copied into every element the same way.
        let set = JsonRules {
            set: vec![(
                JsonPath::parse("contact[].tag").unwrap(),
                json!("t".repeat(1_000)),
            )],
            ..Default::default()
        };
        let tagged = set.apply(json!({"contact": [{}, {}]})).unwrap();
        assert_eq!(tagged["contact"][1]["tag"].as_str().map(str::len), Some(1_000));
        assert_eq!(set.apply(json!({"contact": many})), Err(Failure::TooLarge));
    }

    #[test]
    fn chained_renames_open_everything_rather_than_growing_without_end() {
        // Each rename's source lies in the previous destination: the paths to open double.
        let mut rename = Vec::new();
        let mut prev = "x".to_string();
        for i in 0..30 {
            let next = format!("{prev}.y{i}");
            rename.push((
                JsonPath::parse(&format!("{prev}.y")).unwrap(),
                JsonPath::parse(&next).unwrap(),
            ));
            prev = next;
        }
        let rules = JsonRules {
            rename,
            set: vec![(JsonPath::parse(&format!("{prev}.z")).unwrap(), json!(1))],
            ..Default::default()
        };
        assert!(rules.reached_paths().is_none());
        let text = br#"{"x": {"y": {"deep": [1, 2]}}}"#;
        let out = crate::transform::body::transform_json(&rules, text).unwrap();
        let reread: Value = serde_json::from_slice(&out).unwrap();
        let expected = rules.apply(serde_json::from_slice(text).unwrap()).unwrap();
        assert_eq!(reread, expected);
    }

    #[test]
    fn rename_inside_array_elements() {
        let rules = JsonRules {
            rename: vec![(
                JsonPath::parse("orders[].id").unwrap(),
                JsonPath::parse("orders[].order_id").unwrap(),
            )],
            ..Default::default()
        };
        let out = rules.apply(doc()).unwrap();
        assert_eq!(
            out["orders"],
            json!([{"order_id": 1, "card": "4111"}, {"order_id": 2, "card": "5500"}])
        );
    }

    #[test]
    fn target_and_root_arrays() {
        let rules = JsonRules {
            target: Some(JsonPath::parse("data").unwrap()),
            deny: paths(&["secret"]),
            ..Default::default()
        };
        let out = rules
            .apply(json!({"data": [{"a": 1, "secret": 2}, {"a": 3, "secret": 4}], "meta": {}}))
            .unwrap();
        assert_eq!(out, json!([{"a": 1}, {"a": 3}]));
        assert_eq!(rules.apply(json!({"other": 1})), Err(Failure::TargetMissing));
    }

    #[test]
    fn escaped_and_repeated_keys_are_one_key() {
        let rules = JsonRules {
            deny: paths(&["password"]),
            ..Default::default()
        };
        for text in [
            r#"{"pass\u0077ord": "s3cret", "ok": 1}"#,
            r#"{"password": "s3cret", "password": "s3cret", "ok": 1}"#,
            r#"{"password": 1, "ok": 1, "password": "s3cret"}"#,
        ] {
            let doc: Value = serde_json::from_str(text).unwrap();
            let out = rules.apply(doc).unwrap().to_string();
            assert_eq!(out, r#"{"ok":1}"#, "{text}");
        }
    }
}
