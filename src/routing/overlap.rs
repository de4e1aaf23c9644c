//! Which paths two route paths have in common, for `check`: whether one route path can take
//! requests another also matches (so a protected path may lose some of its requests to a public
//! one), and whether it takes all of them (so the other can never match).
//!
//! Literal paths and templates are read as the same shape: a list of segment matchers, and
//! whether anything may follow (a prefix). A constraint's regular expression is compared with
//! literal segments exactly; between two constraints only the same expression is known to
//! cover the other, and any two are assumed to share a segment (a report may then say "may").

use regex::Regex;

/// One segment of a route path.
#[derive(Debug, Clone, Copy)]
pub enum SegMatch<'a> {
    Literal(&'a str),
    /// A capture or `*` (`None`: any segment), or a constrained capture.
    Any(Option<&'a Regex>),
}

/// A route path as segment matchers.
#[derive(Debug, Clone)]
pub struct Pattern<'a> {
    pub segs: Vec<SegMatch<'a>>,
    pub prefix: bool,
}

impl<'a> Pattern<'a> {
    /// A literal `path` (exact) or `path_prefix`. A prefix ending in `/` reads as the prefix
    /// without it (a report may include its own path, which a `/a/` prefix does not take).
    pub fn literal(text: &'a str, prefix: bool) -> Pattern<'a> {
        let segs = text
            .strip_prefix('/')
            .unwrap_or(text)
            .split('/')
            .filter(|s| !(prefix && s.is_empty()))
            .map(SegMatch::Literal)
            .collect::<Vec<_>>();
        // `/` as an exact path is one empty segment; as a prefix it is no segment at all.
        Pattern { segs, prefix }
    }

    /// The same path without its first segment (what routing reads after a `/v2` version).
    pub fn without_first(&self) -> Pattern<'a> {
        Pattern {
            segs: self.segs.iter().skip(1).copied().collect(),
            prefix: self.prefix,
        }
    }
}

fn seg_overlaps(a: SegMatch<'_>, b: SegMatch<'_>) -> bool {
    match (a, b) {
        (SegMatch::Literal(x), SegMatch::Literal(y)) => x == y,
        (SegMatch::Literal(l), SegMatch::Any(re)) | (SegMatch::Any(re), SegMatch::Literal(l)) => {
            !l.is_empty() && re.is_none_or(|re| re.is_match(l))
        }
        (SegMatch::Any(_), SegMatch::Any(_)) => true,
    }
}

/// Whether matcher `a` accepts every segment `b` accepts.
fn seg_covers(a: SegMatch<'_>, b: SegMatch<'_>) -> bool {
    match (a, b) {
        (SegMatch::Any(None), SegMatch::Literal(l)) => !l.is_empty(),
        (SegMatch::Any(None), SegMatch::Any(_)) => true,
        (SegMatch::Any(Some(re)), SegMatch::Literal(l)) => re.is_match(l),
        (SegMatch::Any(Some(x)), SegMatch::Any(Some(y))) => x.as_str() == y.as_str(),
        (SegMatch::Any(Some(_)), SegMatch::Any(None)) => false,
        (SegMatch::Literal(x), SegMatch::Literal(y)) => x == y,
        (SegMatch::Literal(_), SegMatch::Any(_)) => false,
    }
}

/// Whether some canonical path matches both.
pub fn intersects(a: &Pattern<'_>, b: &Pattern<'_>) -> bool {
    let common = a.segs.len().min(b.segs.len());
    let lengths = match (a.prefix, b.prefix) {
        (false, false) => a.segs.len() == b.segs.len(),
        (true, false) => b.segs.len() >= a.segs.len(),
        (false, true) => a.segs.len() >= b.segs.len(),
        (true, true) => true,
    };
    lengths && (0..common).all(|i| seg_overlaps(a.segs[i], b.segs[i]))
}

/// Whether every path `b` matches is matched by `a`.
pub fn covers(a: &Pattern<'_>, b: &Pattern<'_>) -> bool {
    let lengths = match (a.prefix, b.prefix) {
        (false, false) => a.segs.len() == b.segs.len(),
        (true, _) => b.segs.len() >= a.segs.len(),
        (false, true) => false,
    };
    lengths && a.segs.iter().zip(&b.segs).all(|(x, y)| seg_covers(*x, *y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::template::PathTemplate;

    fn t(text: &str, prefix: bool) -> PathTemplate {
        PathTemplate::parse(text, prefix).unwrap()
    }

    #[test]
    fn overlaps_and_coverage() {
        let orgs = t("/orgs/{org}", true);
        let billing = t("/orgs/*/billing", true);
        assert!(covers(&orgs.pattern(), &billing.pattern()));
        assert!(!covers(&billing.pattern(), &orgs.pattern()));
        let admin = t("/{v:v[0-9]+}/admin", true);
        let v1 = Pattern::literal("/v1", true);
        assert!(intersects(&v1, &admin.pattern()));
        assert!(!intersects(&Pattern::literal("/x1", true), &admin.pattern()));
        assert!(intersects(
            &Pattern::literal("/users/me", false),
            &t("/users/{id}", false).pattern()
        ));
        assert!(!intersects(
            &Pattern::literal("/users", false),
            &t("/users/{id}", false).pattern()
        ));
        assert!(intersects(
            &Pattern::literal("/", true),
            &t("/{a}/x", false).pattern()
        ));
        assert!(!covers(
            &t("/u/{id:[0-9]+}", false).pattern(),
            &t("/u/{id}", false).pattern()
        ));
    }
}
