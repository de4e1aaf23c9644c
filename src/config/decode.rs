//! Decoding the positioned YAML tree into typed values while collecting *every* problem.
//!
//! Each decoder reports what is wrong with its node into [`Problems`] and returns `None`
//! when the value is unusable, so one run of `check` lists all mistakes instead of the first.

use std::time::Duration;

use super::diag::{did_you_mean, Problems};
use super::duration::parse_duration;
use super::yaml::{Node, Pos};

/// A value together with where it was written, for later semantic checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

/// Decoding from a YAML node.
pub trait Decode: Sized {
    /// Decode `node` found at field `path`; report problems and return `None` if unusable.
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self>;
}

/// `parent.key`, or `key` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `parent[index]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The text of a scalar node, or a problem saying what was expected.
pub fn scalar<'a>(node: &'a Node, path: &str, expected: &str, problems: &mut Problems) -> Option<&'a str> {
    match node {
        Node::Scalar { value, .. } => Some(value),
        other => {
            problems.add(
                other.pos(),
                path,
                format!("expected {expected}, found {}", other.kind()),
            );
            None
        }
    }
}

impl Decode for String {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        scalar(node, path, "a string", problems).map(str::to_string)
    }
}

impl Decode for bool {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        match scalar(node, path, "true or false", problems)? {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                problems.add(
                    node.pos(),
                    path,
                    format!("expected true or false, found `{other}`"),
                );
                None
            }
        }
    }
}

macro_rules! decode_unsigned {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
                let text = scalar(node, path, "a whole number", problems)?;
                match text.parse::<$t>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        problems.add(node.pos(), path, whole_number_problem(text));
                        None
                    }
                }
            }
        }
    )*};
}
decode_unsigned!(u16, u32, u64, usize);

/// Why `text` is not a whole number, in the words of what was written.
fn whole_number_problem(text: &str) -> String {
    if text.parse::<f64>().is_ok_and(|f| f.fract() != 0.0) {
        format!("expected a whole number, found the fraction `{text}`")
    } else if text.starts_with('-') {
        format!("expected a whole number of 0 or more, found `{text}`")
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        format!("`{text}` is too large")
    } else {
        format!("expected a whole number, found `{text}`")
    }
}

impl Decode for Duration {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        let text = scalar(node, path, "a duration such as 250ms, 2s or 1m", problems)?;
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.add(node.pos(), path, format!("bad duration: {e}"));
                None
            }
        }
    }
}

impl<T: Decode> Decode for Spanned<T> {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        T::decode(node, path, problems).map(|value| Spanned {
            value,
            pos: node.pos(),
        })
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        let Node::Seq { items, .. } = node else {
            problems.add(
                node.pos(),
                path,
                format!("expected a list, found {}", node.kind()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match T::decode(item, &index(path, i), problems) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A mapping with free-form keys (header names, upstream names), in file order.
#[derive(Debug, Clone)]
pub struct Entries<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<T: Decode> Decode for Entries<T> {
    fn decode(node: &Node, path: &str, problems: &mut Problems) -> Option<Self> {
        let Node::Map { entries, .. } = node else {
            problems.add(
                node.pos(),
                path,
                format!("expected a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut out: Vec<(Spanned<String>, T)> = Vec::with_capacity(entries.len());
        let mut first_line: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut ok = true;
        for (k, v) in entries {
            let Some(key) = scalar(k, path, "a string key", problems) else {
                ok = false;
                continue;
            };
            if let Some(line) = first_line.get(key) {
                problems.add(
                    k.pos(),
                    &join(path, key),
                    format!("`{key}` is given twice (first at line {line})"),
                );
                ok = false;
                continue;
            }
            first_line.insert(key, k.pos().line);
            match T::decode(v, &join(path, key), problems) {
                Some(value) => out.push((
                    Spanned {
                        value: key.to_string(),
                        pos: k.pos(),
                    },
                    value,
                )),
                None => ok = false,
            }
        }
        ok.then_some(Entries(out))
    }
}

/// A section that maps unique names to definitions (`upstreams:`, `auth:`). Each name must be
/// plain (it becomes a metric label and log field) and unique; `decode` turns its value into an
/// item. Every declared name is returned, even where the definition is broken, so references to
/// it are not also reported as undefined.
///
/// `fields` are an item's own field names: one written at the level of the names (with a
/// value that is not a mapping, so it cannot be an item) was meant to be indented under the
/// item above it. That mistake is reported once, not as an empty item plus one broken item
/// per field.
pub fn named_items<T>(
    node: &Node,
    section: &str,
    what: &str,
    fields: &[&str],
    p: &mut Problems,
    mut decode: impl FnMut(Spanned<String>, &Node, &str, &mut Problems) -> Option<T>,
) -> (Vec<T>, Vec<String>) {
    let Node::Map { entries, .. } = node else {
        p.add(
            node.pos(),
            section,
            format!("expected a mapping of {what} names, found {}", node.kind()),
        );
        return (Vec::new(), Vec::new());
    };
    let stray = |(k, v): &(Node, Node)| {
        matches!(k, Node::Scalar { value, .. } if fields.contains(&value.as_str()))
            && !matches!(v, Node::Map { .. })
    };
    let mut items = Vec::new();
    let mut names: Vec<Spanned<String>> = Vec::new();
    let mut first_line: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut seen_item = false;
    for (i, (k, v)) in entries.iter().enumerate() {
        if stray(&entries[i]) {
            // Reported with the item above it; before any item, on its own.
            if !seen_item {
                p.add(
                    k.pos(),
                    section,
                    format!("this is a field of an {what}, not an {what} name: indent it under one"),
                );
            }
            continue;
        }
        seen_item = true;
        let strays: Vec<&str> = entries[i + 1..]
            .iter()
            .take_while(|e| stray(e))
            .filter_map(|(k, _)| match k {
                Node::Scalar { value, .. } => Some(value.as_str()),
                _ => None,
            })
            .collect();
        let Some(name) = scalar(k, section, &format!("an {what} name"), p) else {
            continue;
        };
        if !strays.is_empty() {
            let path = format!("{section}.{name}");
            p.add(
                entries[i + 1].0.pos(),
                &path,
                format!(
                    "{} {} indented at the level of {what} names: indent {} under `{name}`",
                    strays
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if strays.len() == 1 { "is" } else { "are" },
                    if strays.len() == 1 { "it" } else { "them" },
                ),
            );
            names.push(Spanned {
                value: name.to_string(),
                pos: k.pos(),
            });
            continue;
        }
        let path = format!("{section}.{name}");
        if let Some(line) = first_line.get(name) {
            p.add(
                k.pos(),
                &path,
                format!("{what} `{name}` is defined twice (first at line {line})"),
            );
            continue;
        }
        first_line.insert(name, k.pos().line);
        let name = Spanned {
            value: name.to_string(),
            pos: k.pos(),
        };
        names.push(name.clone());
        check_name(&name, &path, p);
        if let Some(item) = decode(name, v, &path, p) {
            items.push(item);
        }
    }
    (items, names.into_iter().map(|n| n.value).collect())
}

/// Names become metric labels and log fields: keep them plain.
pub fn check_name(name: &Spanned<String>, path: &str, p: &mut Problems) {
    let ok = !name.value.is_empty()
        && name.value.len() <= 64
        && name
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        p.add(
            name.pos,
            path,
            format!(
                "name `{}` must be 1-64 characters of A-Z a-z 0-9 - _ .",
                name.value
            ),
        );
    }
}

/// The fields of one mapping that has a fixed set of allowed keys.
///
/// Unknown keys are errors (a typo must never silently disable a feature), reported with a
/// "did you mean" hint; duplicate keys are errors too.
pub struct Fields<'a> {
    path: String,
    pos: Pos,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    pub fn new(node: &'a Node, path: &str, allowed: &[&str], problems: &mut Problems) -> Option<Fields<'a>> {
        Fields::nested(node, path, allowed, &[], problems)
    }

    /// Like [`Fields::new`] for a mapping nested in another whose fields are `parent`: a
    /// parent's field written here was indented one level too deep, and is reported as such
    /// (the parent does not report it missing; see [`Fields::misplaced`]).
    pub fn nested(
        node: &'a Node,
        path: &str,
        allowed: &[&str],
        parent: &[&str],
        problems: &mut Problems,
    ) -> Option<Fields<'a>> {
        let Node::Map { entries, pos } = node else {
            problems.add(
                node.pos(),
                path,
                format!(
                    "expected a mapping with fields {}, found {}",
                    allowed.join(", "),
                    node.kind()
                ),
            );
            return None;
        };
        let mut kept: Vec<(&'a str, &'a Node)> = Vec::with_capacity(entries.len());
        let mut first_pos: Vec<Pos> = Vec::new();
        for (k, v) in entries {
            let Some(key) = scalar(k, path, "a field name", problems) else {
                continue;
            };
            if !allowed.contains(&key) {
                let message = if parent.contains(&key) {
                    let (outer, inner) = path.rsplit_once('.').unwrap_or(("the section", path));
                    format!(
                        "`{key}` is a field of `{outer}`, not of `{inner}`: indent it to line up \
                         with `{inner}`"
                    )
                } else {
                    let hint = match did_you_mean(key, allowed) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None => format!(" (expected one of: {})", allowed.join(", ")),
                    };
                    format!("unknown field `{key}`{hint}")
                };
                problems.add(k.pos(), &join(path, key), message);
                continue;
            }
            if let Some(i) = kept.iter().position(|(name, _)| *name == key) {
                problems.add(
                    k.pos(),
                    &join(path, key),
                    format!("`{key}` is given twice (first at line {})", first_pos[i].line),
                );
                continue;
            }
            kept.push((key, v));
            first_pos.push(k.pos());
        }
        Some(Fields {
            path: path.to_string(),
            pos: *pos,
            entries: kept,
        })
    }

    /// Position of the mapping itself.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// Field path of a child.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Position of a field's value, or of the mapping when the field is absent.
    pub fn pos_of(&self, key: &str) -> Pos {
        self.node(key).map_or(self.pos, Node::pos)
    }

    pub fn node(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.node(key).is_some()
    }

    /// Whether `key` was written inside the mapping of field `child` instead of here (an
    /// indentation mistake [`Fields::nested`] reports once; this mapping should not also
    /// report it missing).
    pub fn misplaced(&self, child: &str, key: &str) -> bool {
        match self.node(child) {
            Some(Node::Map { entries, .. }) => entries
                .iter()
                .any(|(k, _)| matches!(k, Node::Scalar { value, .. } if value == key)),
            _ => false,
        }
    }

    /// An optional field: `None` when absent (or unusable, which has been reported).
    pub fn opt<T: Decode>(&self, key: &str, problems: &mut Problems) -> Option<T> {
        match self.node(key) {
            None | Some(Node::Null { .. }) => None,
            Some(node) => T::decode(node, &self.path_of(key), problems),
        }
    }

    /// An optional field that must be one of the named `choices`; `default` when absent,
    /// `None` (reported) for any other value.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        default: T,
        problems: &mut Problems,
    ) -> Option<T> {
        let Some(given) = self.opt::<Spanned<String>>(key, problems) else {
            return Some(default);
        };
        let found = choices.iter().find(|(name, _)| *name == given.value);
        if found.is_none() {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            problems.add(
                given.pos,
                &self.path_of(key),
                format!("unknown value `{}`; expected {}", given.value, names.join(" or ")),
            );
        }
        found.map(|(_, value)| *value)
    }

    /// A whole number within `range` (`default` when absent). Anything else — a fraction, a
    /// negative number, a word, a value out of range — is reported as what the field takes,
    /// "must be a whole number from 1 to 10000, found `1.5`", and `default` stands in so the
    /// item's other checks still run (a reported problem keeps the file from being used).
    pub fn ranged<T: TryFrom<u64>>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: T,
        problems: &mut Problems,
    ) -> T {
        let node = match self.node(key) {
            None | Some(Node::Null { .. }) => return default,
            Some(node) => node,
        };
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        let Some(text) = scalar(node, &self.path_of(key), &expected, problems) else {
            return default;
        };
        let value = text.parse::<u64>().ok().filter(|v| range.contains(v));
        match value.and_then(|v| T::try_from(v).ok()) {
            Some(v) => v,
            None => {
                problems.add(
                    node.pos(),
                    &self.path_of(key),
                    format!("must be {expected}, found `{text}`"),
                );
                default
            }
        }
    }

    /// A fraction from 0 to 1 (`default` when absent); `None` (reported, with `example`
    /// saying what a value means) for anything else.
    pub fn fraction(&self, key: &str, default: f64, example: &str, problems: &mut Problems) -> Option<f64> {
        let Some(text) = self.opt::<Spanned<String>>(key, problems) else {
            return Some(default);
        };
        match text.value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Some(v),
            _ => {
                problems.add(
                    text.pos,
                    &self.path_of(key),
                    format!(
                        "must be a fraction from 0 to 1 ({example}), found `{}`",
                        text.value
                    ),
                );
                None
            }
        }
    }

    /// An optional field with a default when absent.
    pub fn or<T: Decode>(&self, key: &str, default: T, problems: &mut Problems) -> T {
        self.opt(key, problems).unwrap_or(default)
    }

    /// A required field: reports a missing one at the mapping's position.
    pub fn req<T: Decode>(&self, key: &str, problems: &mut Problems) -> Option<T> {
        match self.node(key) {
            None | Some(Node::Null { .. }) => {
                problems.add(
                    self.pos,
                    &self.path_of(key),
                    format!("missing required field `{key}`"),
                );
                None
            }
            Some(node) => T::decode(node, &self.path_of(key), problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    #[test]
    fn reports_every_unknown_and_duplicate_field() {
        let node = parse("retires: 1\ntimeout: 2s\ntimeout: 3s\nzzz: 1\n").unwrap();
        let mut p = Problems::new("f");
        let f = Fields::new(&node, "up", &["retries", "timeout"], &mut p).unwrap();
        assert_eq!(f.opt::<Duration>("timeout", &mut p), Some(Duration::from_secs(2)));
        let text = p.to_string();
        assert!(
            text.contains("f:1:1: up.retires: unknown field `retires`; did you mean `retries`?"),
            "{text}"
        );
        assert!(
            text.contains("f:3:1: up.timeout: `timeout` is given twice (first at line 2)"),
            "{text}"
        );
        assert!(
            text.contains("f:4:1: up.zzz: unknown field `zzz` (expected one of: retries, timeout)"),
            "{text}"
        );
    }

    #[test]
    fn list_reports_each_bad_item() {
        let node = parse("[1s, x, 2q]").unwrap();
        let mut p = Problems::new("f");
        assert!(Vec::<Duration>::decode(&node, "d", &mut p).is_none());
        assert_eq!(p.len(), 2);
        assert!(p.to_string().contains("d[1]"));
    }
}
