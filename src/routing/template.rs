//! Path templates: `path: /users/{id}`, `path: /users/{id:[0-9]+}`, `path_prefix: /files/*/raw`.
//!
//! A template is matched segment by segment against the **canonical** path (see `normalize`),
//! so a captured value is always one whole canonical segment: never empty, never `.` or `..`,
//! never holding `/` or an encoded separator (`%2F` and `%5C` are refused before routing).
//! `{name}` captures any segment, `{name:REGEX}` one the regular expression matches whole,
//! `*` any segment without naming it. A `path_prefix` template also covers every path below it.
//!
//! # Precedence
//! Routes are compared by how they match each segment of the request's path, from the left:
//! a literal segment beats a constrained capture, which beats a capture, which beats `*`, which
//! beats a segment only a shorter prefix covers. So `/users/me` beats `/users/{id}`, which
//! beats `/users/*`, which beats `path_prefix: /users`. Then an exact `path` beats a prefix, a
//! longer literal prefix beats a shorter one (`/a/` over `/a`), and the first declared wins.
//! [`PathTemplate::ranks`] is that comparison key; literal paths rank [`LITERAL`] everywhere.

use std::cmp::Ordering;

use regex::Regex;

/// The rank of a literal segment.
pub const LITERAL: u8 = 4;
const CONSTRAINED: u8 = 3;
const CAPTURE: u8 = 2;
const WILDCARD: u8 = 1;

/// One segment of a template.
#[derive(Debug, Clone)]
enum Seg {
    Literal(String),
    Capture { name: String, constraint: Option<Regex> },
    Wildcard,
}

impl Seg {
    fn rank(&self) -> u8 {
        match self {
            Seg::Literal(_) => LITERAL,
            Seg::Capture {
                constraint: Some(_), ..
            } => CONSTRAINED,
            Seg::Capture { constraint: None, .. } => CAPTURE,
            Seg::Wildcard => WILDCARD,
        }
    }

    fn matches(&self, segment: &str) -> bool {
        match self {
            Seg::Literal(l) => l == segment,
            Seg::Capture { constraint, .. } => {
                !segment.is_empty() && constraint.as_ref().is_none_or(|re| re.is_match(segment))
            }
            Seg::Wildcard => !segment.is_empty(),
        }
    }
}

/// A compiled route path with at least one capture or wildcard. Two templates are equal when
/// they match the same paths the same way (same shape, both exact or both prefixes).
#[derive(Debug, Clone)]
pub struct PathTemplate {
    text: String,
    /// The text with capture names erased (`/users/{}`, `/users/{:[0-9]+}`): two templates
    /// with the same shape match the same paths.
    shape: String,
    segs: Vec<Seg>,
    ranks: Vec<u8>,
    prefix: bool,
}

impl PartialEq for PathTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.prefix == other.prefix
    }
}

impl Eq for PathTemplate {}

impl std::hash::Hash for PathTemplate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.shape.hash(state);
        self.prefix.hash(state);
    }
}

/// Whether a route path uses template syntax (then it must parse as a template).
pub fn is_template(text: &str) -> bool {
    text.contains(['{', '}', '*'])
}

impl PathTemplate {
    /// Parse `text` (a `path` when `prefix` is false, a `path_prefix` otherwise). Literal
    /// segments are checked by the caller (they must be canonical); this checks the syntax.
    pub fn parse(text: &str, prefix: bool) -> Result<PathTemplate, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err("a path starts with `/`".into());
        };
        let mut depth = 0usize;
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                '/' if depth > 0 => {
                    return Err(
                        "a capture or its constraint mentions `/`, but a captured segment never contains one"
                            .into(),
                    )
                }
                _ => {}
            }
        }
        let mut segs = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for raw in rest.split('/') {
            let seg = if raw == "*" {
                Seg::Wildcard
            } else if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                let (name, constraint) = match inner.split_once(':') {
                    Some((name, re)) => (name, Some(constraint(re)?)),
                    None => (inner, None),
                };
                if !valid_name(name) {
                    return Err(format!(
                        "`{{{name}}}`: a capture name is letters, digits and `_`, starting with a letter or `_`"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("capture `{name}` appears twice"));
                }
                names.push(name);
                Seg::Capture {
                    name: name.to_string(),
                    constraint,
                }
            } else if raw.contains(['{', '}', '*']) {
                return Err(format!(
                    "segment `{raw}`: `{{name}}`, `{{name:regex}}` and `*` must be a whole segment"
                ));
            } else {
                Seg::Literal(raw.to_string())
            };
            segs.push(seg);
        }
        if prefix
            && segs
                .last()
                .is_some_and(|s| matches!(s, Seg::Literal(l) if l.is_empty()))
        {
            return Err(
                "a template `path_prefix` does not end with `/` (it covers the paths below it already)"
                    .into(),
            );
        }
        let ranks = segs.iter().map(Seg::rank).collect();
        let shape = segs
            .iter()
            .map(|s| match s {
                Seg::Literal(l) => l.clone(),
                Seg::Capture {
                    constraint: Some(re), ..
                } => format!("{{:{}}}", constraint_text(re)),
                Seg::Capture { constraint: None, .. } => "{}".into(),
                Seg::Wildcard => "*".into(),
            })
            .fold(String::new(), |acc, s| acc + "/" + &s);
        Ok(PathTemplate {
            text: text.to_string(),
            shape,
            segs,
            ranks,
            prefix,
        })
    }

    /// The path as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text with capture names erased.
    pub fn shape(&self) -> &str {
        &self.shape
    }

    /// The shape with `*` read as `{}`: templates with the same coverage match the same paths.
    pub fn coverage(&self) -> String {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Wildcard | Seg::Capture { constraint: None, .. } => "{}".to_string(),
                Seg::Literal(l) => l.clone(),
                Seg::Capture {
                    constraint: Some(re), ..
                } => format!("{{:{}}}", constraint_text(re)),
            })
            .fold(String::new(), |acc, s| acc + "/" + &s)
    }

    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// The precedence key (see the module docs): one rank per template segment.
    pub fn ranks(&self) -> &[u8] {
        &self.ranks
    }

    /// The literal segments before the first capture or wildcard, as a path (`/users` for
    /// `/users/{id}`, `/` for `/{tenant}/x`).
    pub fn literal_head(&self) -> String {
        let head: Vec<&str> = self
            .segs
            .iter()
            .map_while(|s| match s {
                Seg::Literal(l) => Some(l.as_str()),
                _ => None,
            })
            .collect();
        format!("/{}", head.join("/"))
    }

    /// The template as segment matchers (see `overlap`).
    pub fn pattern(&self) -> super::overlap::Pattern<'_> {
        use super::overlap::SegMatch;
        super::overlap::Pattern {
            segs: self
                .segs
                .iter()
                .map(|s| match s {
                    Seg::Literal(l) => SegMatch::Literal(l),
                    Seg::Capture { constraint, .. } => SegMatch::Any(constraint.as_ref()),
                    Seg::Wildcard => SegMatch::Any(None),
                })
                .collect(),
            prefix: self.prefix,
        }
    }

    /// The literal segments, each with whether it is the last segment.
    pub fn literals(&self) -> impl Iterator<Item = (bool, &str)> {
        let last = self.segs.len().saturating_sub(1);
        self.segs.iter().enumerate().filter_map(move |(i, s)| match s {
            Seg::Literal(l) => Some((i == last, l.as_str())),
            _ => None,
        })
    }

    /// The first literal segment, if the template starts with one (for indexing).
    pub fn first_literal(&self) -> Option<&str> {
        match self.segs.first() {
            Some(Seg::Literal(l)) => Some(l),
            _ => None,
        }
    }

    /// Capture names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Capture { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the canonical `path` matches (without collecting captures: routing calls this
    /// for every candidate template).
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut segments = rest.split('/');
        for seg in &self.segs {
            match segments.next() {
                Some(s) if seg.matches(s) => {}
                _ => return false,
            }
        }
        self.prefix || segments.next().is_none()
    }

    /// The captured segments of `path` (by capture order) and the byte offset where the part
    /// a prefix template does not cover starts (`path.len()` for an exact match).
    fn split<'p>(&self, path: &'p str) -> Option<(Vec<&'p str>, usize)> {
        let rest = path.strip_prefix('/')?;
        let mut captured = Vec::new();
        let mut offset = 1;
        let mut segments = rest.split('/');
        for (i, seg) in self.segs.iter().enumerate() {
            let s = segments.next()?;
            if !seg.matches(s) {
                return None;
            }
            if matches!(seg, Seg::Capture { .. }) {
                captured.push(s);
            }
            offset += s.len() + usize::from(i + 1 < self.segs.len());
        }
        let end = offset.min(path.len());
        match segments.next() {
            None => Some((captured, path.len())),
            Some(_) if self.prefix => Some((captured, end)),
            Some(_) => None,
        }
    }

    /// The value `name` captured from `path`, if `path` matches.
    pub fn capture<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        let (captured, _) = self.split(path)?;
        let at = self.names().position(|n| n == name)?;
        captured.get(at).copied()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A constraint matches a whole segment: anchored, and it can never match `/`.
fn constraint(re: &str) -> Result<Regex, String> {
    if re.is_empty() {
        return Err("an empty constraint after `:`".into());
    }
    if re.contains('/') {
        return Err(format!(
            "constraint `{re}` mentions `/`, but a captured segment never contains one"
        ));
    }
    // Alone first: a constraint that is not a whole expression (`[0-9]+)|(?:.*`) could
    // otherwise close the anchoring group and match any segment.
    Regex::new(re).map_err(|e| format!("constraint `{re}` is not a regular expression: {e}"))?;
    Regex::new(&format!("^(?:{re})$"))
        .map_err(|e| format!("constraint `{re}` is not a regular expression: {e}"))
}

fn constraint_text(re: &Regex) -> &str {
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

/// Compare two precedence keys (see the module docs): the higher rank at the first segment
/// where they differ wins; a key that goes on (ranks > 0) beats one that stopped.
pub fn compare_ranks(a: impl Iterator<Item = u8>, b: impl Iterator<Item = u8>) -> Ordering {
    a.cmp(b)
}

/// A route's upstream path as a template of its captures: `rewrite: /api/v2/users/{id}`.
///
/// Captures may stand anywhere in a segment (`/users/{id}.json`). The literal text is checked
/// by `check` (canonical, no segment of dots only), and a captured value is a canonical segment
/// that is neither `.` nor `..`, so no substitution can add a segment or climb one.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    /// Index of the capture in the route's template.
    Capture(usize),
}

impl Rewrite {
    /// Parse `text` against the captures of `template` (none for a literal route).
    pub fn parse(text: &str, template: Option<&PathTemplate>) -> Result<Rewrite, String> {
        if !text.starts_with('/') {
            return Err("a rewrite starts with `/`".into());
        }
        let names: Vec<&str> = template.map(|t| t.names().collect()).unwrap_or_default();
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (before, after) = rest.split_at(open);
            let Some(close) = after.find('}') else {
                return Err("`{` without `}`".into());
            };
            let name = &after[1..close];
            let Some(at) = names.iter().position(|n| *n == name) else {
                return Err(if names.is_empty() {
                    format!("`{{{name}}}`: the route's path captures nothing")
                } else {
                    format!(
                        "`{{{name}}}` is not captured by the route's path (it captures {})",
                        names.join(", ")
                    )
                });
            };
            if !before.is_empty() {
                pieces.push(Piece::Text(before.to_string()));
            }
            pieces.push(Piece::Capture(at));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err("`}` without `{`".into());
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Rewrite { pieces })
    }

    /// The literal text with every capture replaced by `x` (for the caller's canonical check).
    pub fn sample(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Capture(_) => "x",
            })
            .collect()
    }

    /// The upstream path for canonical `path`, which the route matched: the rewrite with its
    /// captures filled in, then what a prefix route's path had below the prefix. `prefix` is
    /// the literal prefix of a literal route (ignored when `template` is given).
    pub fn apply(&self, path: &str, template: Option<&PathTemplate>, prefix: Option<&str>) -> Option<String> {
        let (captured, tail_at) = match template {
            Some(t) => t.split(path)?,
            None => (Vec::new(), literal_tail_at(path, prefix)),
        };
        let mut out = String::with_capacity(path.len() + 16);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Capture(i) => out.push_str(captured.get(*i)?),
            }
        }
        let tail = path.get(tail_at..).unwrap_or("");
        if !tail.is_empty() {
            if out.ends_with('/') && tail.starts_with('/') {
                out.pop();
            } else if !out.ends_with('/') && !tail.starts_with('/') {
                out.push('/');
            }
            out.push_str(tail);
        }
        Some(out)
    }
}

/// Where the part of `path` below a literal prefix starts (`path.len()` for an exact path).
fn literal_tail_at(path: &str, prefix: Option<&str>) -> usize {
    match prefix {
        Some(p) if p != "/" && path.starts_with(p) => p.trim_end_matches('/').len(),
        // `/` itself has nothing below the prefix (as `/old` has under `/old`).
        Some(_) if path == "/" => path.len(),
        Some(_) => 0,
        None => path.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str, prefix: bool) -> PathTemplate {
        PathTemplate::parse(text, prefix).unwrap()
    }

    #[test]
    fn matches_whole_segments_only() {
        let users = t("/users/{id}", false);
        assert!(users.matches("/users/7"));
        assert!(!users.matches("/users/7/x"));
        assert!(!users.matches("/users/"), "a capture is never empty");
        assert!(!users.matches("/users"));
        assert_eq!(users.capture("/users/a%20b", "id"), Some("a%20b"));
        let files = t("/files/*/raw", true);
        assert!(files.matches("/files/a/raw"));
        assert!(files.matches("/files/a/raw/b/c"));
        assert!(files.matches("/files/a/raw/"));
        assert!(!files.matches("/files/a/rawx"));
        assert!(!files.matches("/files/a"));
        let digits = t("/users/{id:[0-9]+}", false);
        assert!(digits.matches("/users/42"));
        assert!(!digits.matches("/users/4a"), "anchored");
        assert_eq!(digits.shape(), "/users/{:[0-9]+}");
        assert_eq!(t("/users/{uid}", false).shape(), t("/users/{id}", false).shape());
        assert_eq!(t("/a/*", true).coverage(), t("/a/{x}", true).coverage());
    }

    #[test]
    fn refuses_bad_syntax() {
        for (bad, prefix) in [
            ("/users/{id", false),
            ("/users/x{id}", false),
            ("/users/{id}/{id}", false),
            ("/users/{1d}", false),
            ("/files/a*", true),
            ("/users/{id:}", false),
            ("/users/{id:a/b}", false),
            ("/users/{id:(}", false),
            ("/users/{id}/", true),
            ("/users/{id:[0-9]+)|(?:.*}", false),
        ] {
            assert!(PathTemplate::parse(bad, prefix).is_err(), "{bad}");
        }
        assert!(PathTemplate::parse("/users/{id}/", false).is_ok());
    }

    #[test]
    fn ranks_order_literal_constrained_capture_wildcard() {
        let key = |s: &str| t(s, false).ranks().to_vec();
        assert!(key("/users/{id:[0-9]+}") > key("/users/{id}"));
        assert!(key("/users/{id}") > key("/users/*"));
        assert!(
            key("/users/*") > vec![LITERAL],
            "a capture beats a shorter literal prefix"
        );
        assert!(key("/{a}/x") < key("/x/{a}"), "the leftmost difference decides");
    }

    #[test]
    fn rewrite_fills_captures_and_keeps_the_tail() {
        let tpl = t("/users/{id}", true);
        let rw = Rewrite::parse("/api/v2/users/{id}", Some(&tpl)).unwrap();
        assert_eq!(
            rw.apply("/users/7", Some(&tpl), None).as_deref(),
            Some("/api/v2/users/7")
        );
        assert_eq!(
            rw.apply("/users/7/orders/1", Some(&tpl), None).as_deref(),
            Some("/api/v2/users/7/orders/1")
        );
        let json = Rewrite::parse("/u/{id}.json", Some(&tpl)).unwrap();
        assert_eq!(
            json.apply("/users/7", Some(&tpl), None).as_deref(),
            Some("/u/7.json")
        );
        assert!(Rewrite::parse("/x/{nope}", Some(&tpl)).is_err());
        assert!(Rewrite::parse("/x/{id}", None).is_err());
        let literal = Rewrite::parse("/internal", None).unwrap();
        assert_eq!(
            literal.apply("/old/a/b", None, Some("/old")).as_deref(),
            Some("/internal/a/b")
        );
        assert_eq!(
            literal.apply("/old", None, Some("/old")).as_deref(),
            Some("/internal")
        );
        assert_eq!(
            literal.apply("/old/", None, Some("/old/")).as_deref(),
            Some("/internal/")
        );
        let root = Rewrite::parse("/", None).unwrap();
        assert_eq!(root.apply("/old/a", None, Some("/old")).as_deref(), Some("/a"));
        assert_eq!(root.apply("/exact", None, None).as_deref(), Some("/"));
    }
}
