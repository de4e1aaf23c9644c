//! `google.api.http` path templates (`/v1/{name=shelves/*}/books/{book}:publish`): parsing,
//! matching a request path, and what a match binds (field path → value).
//!
//! Grammar (google/api/http.proto):
//! `Template = "/" Segments [ Verb ]`, `Segment = "*" | "**" | LITERAL | Variable`,
//! `Variable = "{" FieldPath [ "=" Segments ] "}"`, `Verb = ":" LITERAL`. `**` matches zero or
//! more segments and may only be last; `{f}` is `{f=*}`.

use std::fmt;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: zero or more segments (last only).
    Rest,
}

/// A variable: the field it binds and the segments it spans (`start..end`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field: String,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
    source: String,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value a matched path binds: the field path (`shelf.name`) and the value, percent-decoded
/// (a multi-segment value keeps its `/`).
pub type Binding = (String, String);

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let err = |why: &str| TemplateError(format!("path template `{source}`: {why}"));
        let Some(rest) = source.strip_prefix('/') else {
            return Err(err("must start with `/`"));
        };
        // The verb is after the last `:` that is outside braces.
        let (body, verb) = split_verb(rest);
        if let Some(v) = verb {
            if v.is_empty() || !v.bytes().all(is_literal_byte) {
                return Err(err("the verb after `:` must be a literal"));
            }
        }
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        let mut chars = body;
        while !chars.is_empty() || segments.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let Some(close) = inner.find('}') else {
                    return Err(err("`{` without `}`"));
                };
                let var = &inner[..close];
                let (field, pattern) = match var.split_once('=') {
                    Some((f, p)) => (f, p),
                    None => (var, "*"),
                };
                if field.is_empty()
                    || !field
                        .split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                {
                    return Err(err(&format!("`{field}` is not a field path")));
                }
                if variables.iter().any(|v: &Variable| v.field == field) {
                    return Err(err(&format!("`{field}` is bound twice")));
                }
                let start = segments.len();
                for part in pattern.split('/') {
                    segments.push(segment(part).ok_or_else(|| err(&format!("`{part}` inside `{{{var}}}`")))?);
                }
                variables.push(Variable {
                    field: field.to_string(),
                    start,
                    end: segments.len(),
                });
                chars = &inner[close + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                let part = &chars[..end];
                if part.contains('{') || part.contains('}') {
                    return Err(err("a variable must be a whole segment"));
                }
                segments.push(segment(part).ok_or_else(|| err(&format!("`{part}` is not a segment")))?);
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some("") => return Err(err("a trailing `/`")),
                Some(next) => chars = next,
                None if chars.is_empty() => break,
                None => return Err(err("a variable must be a whole segment")),
            }
        }
        if let Some(i) = segments.iter().position(|s| *s == Segment::Rest) {
            if i + 1 != segments.len() {
                return Err(err("`**` may only be the last segment"));
            }
        }
        Ok(Template {
            segments,
            variables,
            verb: verb.map(str::to_string),
            source: source.to_string(),
        })
    }

    /// Whether it ends in a `:verb`.
    pub fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The fields its variables bind.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field.as_str())
    }

    /// The literal segments before the first wildcard or variable, as a path (`/v1/shelves`):
    /// every path this template matches starts with it.
    pub fn literal_prefix(&self) -> String {
        let first_variable = self.variables.iter().map(|v| v.start).min().unwrap_or(usize::MAX);
        let mut out = String::new();
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Literal(l) if i < first_variable => {
                    out.push('/');
                    out.push_str(l);
                }
                _ => break,
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Literal segments outside variables, and whether it ends in `**` (the precedence
    /// between bindings that match one path).
    pub fn shape(&self) -> (usize, bool) {
        let literals = self
            .segments
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                matches!(s, Segment::Literal(_))
                    && !self.variables.iter().any(|v| (v.start..v.end).contains(i))
            })
            .count();
        (literals, self.segments.last() == Some(&Segment::Rest))
    }

    /// A path this template matches: wildcards and variables as `x` (literals inside a
    /// variable's pattern kept), the verb appended.
    pub fn sample(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::One | Segment::Rest => out.push('x'),
            }
        }
        if let Some(v) = &self.verb {
            out.push(':');
            out.push_str(v);
        }
        out
    }

    /// Whether two templates can match the same path (for `check`): same verb, and every
    /// segment position compatible.
    pub fn overlaps(&self, other: &Template) -> bool {
        if self.verb != other.verb {
            return false;
        }
        let (a, b) = (&self.segments, &other.segments);
        let rest = |s: &[Segment]| s.last() == Some(&Segment::Rest);
        let fixed = |s: &[Segment]| if rest(s) { s.len() - 1 } else { s.len() };
        let (fa, fb) = (fixed(a), fixed(b));
        let lengths_meet = match (rest(a), rest(b)) {
            (false, false) => fa == fb,
            (true, false) => fb >= fa,
            (false, true) => fa >= fb,
            (true, true) => true,
        };
        lengths_meet
            && a[..fa].iter().zip(&b[..fb]).all(|(x, y)| match (x, y) {
                (Segment::Literal(l), Segment::Literal(r)) => l == r,
                _ => true,
            })
    }

    /// Match a request path (percent-encoded, normalized, without the query): the bindings,
    /// or `None`; `Some(Err(field))` when it matches but a bound value is not UTF-8 once
    /// decoded.
    pub fn matches(&self, path: &str) -> Option<Result<Vec<Binding>, String>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => {
                let stripped = rest.strip_suffix(verb.as_str())?.strip_suffix(':')?;
                stripped
            }
            None => rest,
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let has_rest = self.segments.last() == Some(&Segment::Rest);
        let fixed = self.segments.len() - usize::from(has_rest);
        if parts.len() < fixed || (!has_rest && parts.len() != fixed) {
            return None;
        }
        for (seg, part) in self.segments.iter().zip(&parts) {
            match seg {
                Segment::Literal(l) if l != part => return None,
                Segment::One if part.is_empty() => return None,
                _ => {}
            }
        }
        if parts[..fixed].iter().any(|p| p.is_empty()) {
            return None;
        }
        let mut out = Vec::with_capacity(self.variables.len());
        for v in &self.variables {
            let end = if v.end == self.segments.len() && has_rest {
                parts.len()
            } else {
                v.end
            };
            let raw = parts[v.start..end].join("/");
            // The one decoder every reader of the URL uses (an encoded `/` never gets here:
            // normalization refuses it).
            match crate::percent::decode_str(&raw) {
                Some(value) => out.push((v.field.clone(), value)),
                None => return Some(Err(v.field.clone())),
            }
        }
        Some(Ok(out))
    }
}

fn split_verb(rest: &str) -> (&str, Option<&str>) {
    let last = rest.rsplit('/').next().unwrap_or(rest);
    if last.contains('}') || last.contains('{') {
        // `{name=*}:verb` — the colon after the closing brace.
        if let Some(close) = rest.rfind('}') {
            if let Some(verb) = rest[close + 1..].strip_prefix(':') {
                return (&rest[..=close], Some(verb));
            }
        }
        return (rest, None);
    }
    match last.rfind(':') {
        Some(i) => {
            let cut = rest.len() - last.len() + i;
            (&rest[..cut], Some(&rest[cut + 1..]))
        }
        None => (rest, None),
    }
}

fn segment(part: &str) -> Option<Segment> {
    match part {
        "*" => Some(Segment::One),
        "**" => Some(Segment::Rest),
        "" => None,
        l if l.bytes().all(is_literal_byte) => Some(Segment::Literal(l.to_string())),
        _ => None,
    }
}

fn is_literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;=@".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str, p: &str) -> Option<Vec<(String, String)>> {
        Template::parse(t).expect("parses").matches(p)?.ok()
    }

    #[test]
    fn variables_wildcards_and_verbs() {
        assert_eq!(
            m("/v1/orders/{id}", "/v1/orders/42"),
            Some(vec![("id".into(), "42".into())])
        );
        assert_eq!(m("/v1/orders/{id}", "/v1/orders/42/x"), None);
        assert_eq!(m("/v1/orders/{id}", "/v1/orders/"), None);
        assert_eq!(
            m("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2"),
            Some(vec![("name".into(), "shelves/1/books/2".into())])
        );
        assert_eq!(m("/v1/{name=shelves/*}", "/v1/other/1"), None);
        assert_eq!(
            m("/files/{path=**}", "/files/a/b/c.txt"),
            Some(vec![("path".into(), "a/b/c.txt".into())])
        );
        assert_eq!(m("/files/**", "/files"), Some(vec![]));
        assert_eq!(
            m("/v1/orders/{id}:cancel", "/v1/orders/7:cancel"),
            Some(vec![("id".into(), "7".into())])
        );
        assert_eq!(m("/v1/orders/{id}:cancel", "/v1/orders/7"), None);
        assert_eq!(
            m("/v1/{shelf.name}/x", "/v1/a%20b/x"),
            Some(vec![("shelf.name".into(), "a b".into())])
        );
        assert_eq!(
            m("/v1/{name=**}", "/v1/a%20b/c"),
            Some(vec![("name".into(), "a b/c".into())])
        );
        assert_eq!(
            Template::parse("/v1/{id}").expect("parses").matches("/v1/%FF"),
            Some(Err("id".into())),
            "not UTF-8"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in [
            "v1/x",
            "/v1/{id",
            "/v1/**/x",
            "/v1/a{id}",
            "/v1/{a}/{a}",
            "/v1/x/",
            "/v1/{1 2}",
        ] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn overlap_and_prefix() {
        let t = |s| Template::parse(s).expect("parses");
        assert!(t("/v1/orders/{id}").overlaps(&t("/v1/orders/latest")));
        assert!(!t("/v1/orders/{id}").overlaps(&t("/v1/orders/{id}:cancel")));
        assert!(!t("/v1/orders/{id}").overlaps(&t("/v1/users/{id}")));
        assert!(t("/v1/**").overlaps(&t("/v1/users/{id}")));
        assert_eq!(t("/v1/orders/{id}").literal_prefix(), "/v1/orders");
        assert_eq!(t("/{id}").literal_prefix(), "/");
        assert_eq!(
            t("/v1/{name=shelves/*}/books:get").sample(),
            "/v1/shelves/x/books:get"
        );
        assert_eq!(t("/v1/{name=shelves/*}/books").shape(), (2, false));
    }
}
