//! A part's upstream target as a template: `/users/{consumer}/orders?limit={query.limit}`.
//!
//! Every substituted value is percent-encoded as one path segment (before `?`) or one query
//! value (after it), with only RFC 3986's unreserved characters left as they are, so a value
//! such as `../admin`, `a/b?x=1`, `%2f` or one holding CR/LF can never change the path, add a
//! parameter or split the request. A value that is empty, `.` or `..` is refused: as a whole
//! segment it would be dropped or climb a level. A missing value fails the part; it never
//! becomes an empty segment.

use std::borrow::Cow;
use std::fmt;

use crate::transform::json::JsonPath;

/// What a `{…}` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// The authenticated consumer.
    Consumer,
    /// A claim of the verified token.
    Claim(String),
    /// The N-th segment of the normalized request path (1-based).
    Path(usize),
    /// A value the route's path template captured (`{path.id}` for `/users/{id}`).
    Capture(String),
    /// A query parameter of the request (decoded).
    Query(String),
    /// A request header (lower case).
    Header(String),
    /// A field of an earlier part's document (the part must be named in `after`).
    Part { part: String, field: JsonPath },
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Consumer => write!(f, "{{consumer}}"),
            Var::Claim(c) => write!(f, "{{claim.{c}}}"),
            Var::Path(n) => write!(f, "{{path.{n}}}"),
            Var::Capture(name) => write!(f, "{{path.{name}}}"),
            Var::Query(q) => write!(f, "{{query.{q}}}"),
            Var::Header(h) => write!(f, "{{header.{h}}}"),
            Var::Part { part, field } => write!(f, "{{{part}.{field}}}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed target template (the default is `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    path: Vec<Piece>,
    /// After the first `?`, when there is one.
    query: Option<Vec<Piece>>,
}

/// Why a template could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfilled {
    /// The request (or the earlier part) has no such value.
    Missing(String),
    /// The value would stand as a whole segment that is empty, `.` or `..`.
    Unsafe(String),
}

impl Default for Template {
    fn default() -> Self {
        Template {
            path: vec![Piece::Text("/".into())],
            query: None,
        }
    }
}

impl Template {
    /// Parse; `part_names` are the parts a `{PART.PATH}` may name (those in `after`).
    pub fn parse(text: &str, part_names: &[&str]) -> Result<Template, String> {
        if !text.starts_with('/') {
            return Err(format!("`{text}` must start with `/`"));
        }
        if text.contains('#') || text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("`{text}` may not hold `#`, spaces or control characters"));
        }
        let (path, query) = match text.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (text, None),
        };
        let template = Template {
            path: pieces(path, part_names)?,
            query: query.map(|q| pieces(q, part_names)).transpose()?,
        };
        if template.query_names().iter().any(|n| n.contains('\0')) {
            return Err(format!(
                "`{text}`: a variable may stand for a query value, not a parameter name"
            ));
        }
        Ok(template)
    }

    /// The query parameter names the template sets (literal text), so the client's own query,
    /// when forwarded, cannot repeat them.
    pub fn query_names(&self) -> Vec<String> {
        let Some(query) = &self.query else {
            return Vec::new();
        };
        let text: String = query
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Var(_) => "\0",
            })
            .collect();
        text.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| crate::percent::split_pair(pair).0.to_string())
            .collect()
    }

    /// Every variable the template uses.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.path
            .iter()
            .chain(self.query.iter().flatten())
            .filter_map(|p| match p {
                Piece::Var(v) => Some(v),
                Piece::Text(_) => None,
            })
    }

    /// Fill in the values `lookup` gives.
    pub fn render<'a>(&self, lookup: impl Fn(&Var) -> Option<Cow<'a, str>>) -> Result<String, Unfilled> {
        let mut out = String::new();
        render_into(&mut out, &self.path, &lookup, true)?;
        // `.` is unreserved, so pieces side by side (`{a}{b}`, `.{a}`) could still make a
        // dot segment: the path as rendered is checked whole.
        if out.split('/').any(|segment| segment == "." || segment == "..") {
            let var = self
                .vars()
                .next()
                .map_or_else(|| "path".to_string(), Var::to_string);
            return Err(Unfilled::Unsafe(var));
        }
        if let Some(query) = &self.query {
            out.push('?');
            render_into(&mut out, query, &lookup, false)?;
        }
        Ok(out)
    }
}

/// A header value as a template (`x-tenant: "{claim.tenant}"`): values go in as they are,
/// but one holding a control character (CR, LF, NUL…) fails the part, so no value can end
/// the header or add another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplate(Vec<Piece>);

impl ValueTemplate {
    /// Parse; `part_names` as for [`Template::parse`].
    pub fn parse(text: &str, part_names: &[&str]) -> Result<ValueTemplate, String> {
        if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!("`{text}` may not hold control characters"));
        }
        Ok(ValueTemplate(pieces(text, part_names)?))
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.0.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Text(_) => None,
        })
    }

    pub fn render<'a>(&self, lookup: impl Fn(&Var) -> Option<Cow<'a, str>>) -> Result<String, Unfilled> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(var) => {
                    let value = lookup(var).ok_or_else(|| Unfilled::Missing(var.to_string()))?;
                    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                        return Err(Unfilled::Unsafe(var.to_string()));
                    }
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

fn render_into<'a>(
    out: &mut String,
    pieces: &[Piece],
    lookup: &impl Fn(&Var) -> Option<Cow<'a, str>>,
    in_path: bool,
) -> Result<(), Unfilled> {
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(var) => {
                let value = lookup(var).ok_or_else(|| Unfilled::Missing(var.to_string()))?;
                let whole_segment = in_path
                    && out.ends_with('/')
                    && pieces
                        .get(i + 1)
                        .is_none_or(|next| matches!(next, Piece::Text(t) if t.starts_with('/')));
                if whole_segment && matches!(value.as_ref(), "" | "." | "..") {
                    return Err(Unfilled::Unsafe(var.to_string()));
                }
                if value.is_empty() && in_path {
                    return Err(Unfilled::Unsafe(var.to_string()));
                }
                crate::percent::encode_component_into(out, &value);
            }
        }
    }
    Ok(())
}

fn pieces(text: &str, part_names: &[&str]) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("`}}` without `{{` in `{text}`"));
        }
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or_else(|| format!("`{{` without `}}` in `{text}`"))?;
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        out.push(Piece::Var(var(&rest[open + 1..close], part_names)?));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

fn var(name: &str, part_names: &[&str]) -> Result<Var, String> {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if name == "consumer" {
        return Ok(Var::Consumer);
    }
    let Some((scope, rest)) = name.split_once('.') else {
        return Err(format!(
            "unknown variable `{{{name}}}` (use consumer, claim.NAME, path.N, query.NAME, header.NAME or PART.FIELD)"
        ));
    };
    match scope {
        "claim" if word(rest) => Ok(Var::Claim(rest.to_string())),
        "query" if !rest.is_empty() => Ok(Var::Query(rest.to_string())),
        "header" if http::HeaderName::from_bytes(rest.as_bytes()).is_ok() => {
            Ok(Var::Header(rest.to_ascii_lowercase()))
        }
        "path" => match rest.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Var::Path(n)),
            Ok(_) => Err(format!("`{{path.{rest}}}`: segments count from 1")),
            Err(_) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => {
                Ok(Var::Capture(rest.to_string()))
            }
            Err(_) => Err(format!(
                "`{{path.{rest}}}`: a segment number (from 1) or a capture of the route's path"
            )),
        },
        part if part_names.contains(&part) => {
            let field = JsonPath::parse(rest)?;
            if field.has_each() {
                return Err(format!("`{{{name}}}` names one value; it cannot contain `[]`"));
            }
            Ok(Var::Part {
                part: part.to_string(),
                field,
            })
        }
        part => Err(format!(
            "`{{{name}}}`: `{part}` is not a variable scope or a part named in `after`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(var: &Var) -> Option<Cow<'static, str>> {
        match var {
            Var::Consumer => Some("ann".into()),
            Var::Claim(c) if c == "tenant" => Some("../admin".into()),
            Var::Path(1) => Some("profile".into()),
            Var::Query(q) if q == "limit" => Some("10&admin=1#x".into()),
            Var::Header(h) if h == "x-evil" => Some("a\r\nX-Injected: 1".into()),
            Var::Part { part, .. } if part == "user" => Some("7".into()),
            Var::Query(q) if q == "dots" => Some("..".into()),
            _ => None,
        }
    }

    #[test]
    fn values_never_change_the_path_or_the_query() {
        let t = Template::parse(
            "/users/{consumer}/t/{claim.tenant}?limit={query.limit}&h={header.x-evil}",
            &[],
        )
        .unwrap();
        assert_eq!(
            t.render(values).unwrap(),
            "/users/ann/t/..%2Fadmin?limit=10%26admin%3D1%23x&h=a%0D%0AX-Injected%3A%201"
        );
        let t = Template::parse("/orders/{user.id}?p={path.1}", &["user"]).unwrap();
        assert_eq!(t.render(values).unwrap(), "/orders/7?p=profile");
    }

    #[test]
    fn missing_and_unsafe_values_fail_the_part() {
        let t = Template::parse("/x/{claim.other}", &[]).unwrap();
        assert_eq!(t.render(values), Err(Unfilled::Missing("{claim.other}".into())));
        let t = Template::parse("/x/{query.dots}/y", &[]).unwrap();
        assert_eq!(t.render(values), Err(Unfilled::Unsafe("{query.dots}".into())));
        let t = Template::parse("/x/{query.one}{query.one}/y", &[]).unwrap();
        let dot = |var: &Var| matches!(var, Var::Query(q) if q == "one").then_some(Cow::Borrowed("."));
        assert!(
            matches!(t.render(dot), Err(Unfilled::Unsafe(_))),
            "`.` + `.` is `..`"
        );
        let t = Template::parse("/x/.{query.one}", &[]).unwrap();
        assert!(matches!(t.render(dot), Err(Unfilled::Unsafe(_))));
        let t = Template::parse("/x/v{query.dots}", &[]).unwrap();
        assert_eq!(
            t.render(values).unwrap(),
            "/x/v..",
            "inside a segment `..` is only text"
        );
    }

    #[test]
    fn header_values_refuse_line_breaks() {
        let t = ValueTemplate::parse("t-{claim.tenant}", &[]).unwrap();
        assert_eq!(t.render(values).unwrap(), "t-../admin");
        let t = ValueTemplate::parse("{header.x-evil}", &[]).unwrap();
        assert_eq!(t.render(values), Err(Unfilled::Unsafe("{header.x-evil}".into())));
        assert!(ValueTemplate::parse("a\r\nb", &[]).is_err());
        assert!(Template::parse("/u/{user.items[].id}", &["user"]).is_err());
    }

    #[test]
    fn check_refuses_bad_templates() {
        for bad in [
            "users/{consumer}",
            "/u/{nope}",
            "/u/{user.id}",
            "/u/{path.0}",
            "/u/{consumer",
            "/u/consumer}",
            "/u/{claim.}",
            "/u#frag",
            "/u/{header.bad header}",
        ] {
            assert!(Template::parse(bad, &[]).is_err(), "{bad}");
        }
        assert!(Template::parse("/u?{query.a}=1", &[]).is_err());
        let t = Template::parse("/u?a={query.a}&b=2&c", &[]).unwrap();
        assert_eq!(t.query_names(), ["a", "b", "c"]);
        let t = Template::parse("/u/{user.address.city}", &["user"]).unwrap();
        assert_eq!(t.vars().count(), 1);
    }
}
