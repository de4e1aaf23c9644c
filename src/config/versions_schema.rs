//! Decoding a route's `versions:` section. Option keys and version names share one mapping
//! (`from`, `default`, … next to `"1"`, `"2"`); version names start with a digit, so the two
//! can never be confused.

use http::HeaderName;

use super::date::parse_date;
use super::decode::{index, join, scalar, Fields, Spanned};
use super::diag::Problems;
use super::values::{header_name, FRAMING_HEADERS};
use super::versions_model::*;
use super::yaml::Node;

const OPTIONS: &[&str] = &[
    "from",
    "default",
    "conflict",
    "strip_path",
    "keep_query",
    "vendor",
    "header",
];

const VERSION_FIELDS: &[&str] = &[
    "upstream",
    "deprecated",
    "sunset",
    "successor",
    "after_sunset",
    "link",
    "split",
    "sticky",
    "override_header",
];

pub fn decode_versions(node: &Node, path: &str, route: &str, p: &mut Problems) -> Option<VersionsConfig> {
    let Node::Map { entries, pos } = node else {
        p.add(
            node.pos(),
            path,
            format!(
                "expected a mapping of options ({}) and versions (\"1\": {{ upstream: … }}), found {}",
                OPTIONS.join(", "),
                node.kind()
            ),
        );
        return None;
    };
    let (version_entries, option_entries): (Vec<_>, Vec<_>) = entries.iter().partition(
        |(k, _)| matches!(k, Node::Scalar { value, .. } if value.starts_with(|c: char| c.is_ascii_digit())),
    );
    let options = Node::Map {
        entries: option_entries.into_iter().cloned().collect(),
        pos: *pos,
    };
    let f = Fields::new(&options, path, OPTIONS, p)?;
    let mut ok = true;
    let mut versions: Vec<VersionConfig> = Vec::new();
    // Every version declared, broken ones included: a reference to a version whose own
    // definition has a problem is not a second problem.
    let mut declared: Vec<String> = Vec::new();
    for (k, v) in version_entries {
        let Some(name) = scalar(k, path, "a version name", p) else {
            continue;
        };
        let vpath = join(path, name);
        let name = Spanned {
            value: name.to_string(),
            pos: k.pos(),
        };
        if !is_version_name(&name.value) {
            p.add(
                name.pos,
                &vpath,
                "a version name starts with a digit and has at most 32 of 0-9 A-Z a-z . _ -",
            );
            ok = false;
            continue;
        }
        if declared.contains(&name.value) {
            p.add(
                name.pos,
                &vpath,
                format!("version `{}` is defined twice", name.value),
            );
            ok = false;
            continue;
        }
        declared.push(name.value.clone());
        match decode_version(name, v, &vpath, p) {
            Some(version) => versions.push(version),
            None => ok = false,
        }
    }
    if versions.is_empty() && ok {
        p.add(
            *pos,
            path,
            "needs at least one version, such as \"1\": { upstream: users-v1 }",
        );
        return None;
    }
    let from = decode_from(&f, p);
    let conflict = f.choice(
        "conflict",
        &[("reject", Conflict::Reject), ("first", Conflict::First)],
        Conflict::Reject,
        p,
    );
    let header: Spanned<String> = f.or(
        "header",
        Spanned {
            value: "x-api-version".into(),
            pos: *pos,
        },
        p,
    );
    let header = header_name(&header, &f.path_of("header"), p).filter(|h| {
        // Framing and hop-by-hop headers would corrupt the exchange in either direction; the
        // others already mean something else.
        const RESERVED: &[&str] = &[
            "host",
            "content-type",
            "date",
            "vary",
            "link",
            "sunset",
            "deprecation",
        ];
        let reserved = RESERVED.contains(&h.as_str()) || FRAMING_HEADERS.contains(&h.as_str());
        if reserved {
            p.add(
                f.pos_of("header"),
                &f.path_of("header"),
                format!("`{h}` cannot carry the version"),
            );
        }
        !reserved
    });
    let vendor: String = f.or("vendor", route.to_string(), p);
    if vendor.is_empty()
        || !vendor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        p.add(
            f.pos_of("vendor"),
            &f.path_of("vendor"),
            "a vendor name is 0-9 A-Z a-z . _ - (as in application/vnd.<vendor>.v2+json)",
        );
        ok = false;
    }
    let default: Option<Spanned<String>> = f.opt("default", p);
    let names: Vec<&str> = declared.iter().map(String::as_str).collect();
    if let Some(d) = &default {
        if !names.contains(&d.value.as_str()) {
            p.add(
                d.pos,
                &f.path_of("default"),
                format!(
                    "default `{}` is not one of the versions ({})",
                    d.value,
                    names.join(", ")
                ),
            );
            ok = false;
        }
    }
    for v in &versions {
        ok &= check_version(v, &names, &join(path, &v.name.value), p);
    }
    let config = VersionsConfig {
        pos: *pos,
        from: from?,
        default,
        conflict: conflict?,
        strip_path: f.or("strip_path", true, p),
        keep_query: f.or("keep_query", false, p),
        vendor,
        header: header?,
        versions,
    };
    ok.then_some(config)
}

/// `from: [path, "header:accept-version", media_type, "query:version"]`.
fn decode_from(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<VersionSource>> {
    let given: Vec<Spanned<String>> = f.req("from", p)?;
    let path = f.path_of("from");
    let mut sources = Vec::new();
    let mut ok = true;
    for (i, s) in given.iter().enumerate() {
        let source = match s.value.split_once(':') {
            None if s.value == "path" => Some(VersionSource::Path),
            None if s.value == "media_type" => Some(VersionSource::MediaType),
            Some(("header", h)) => HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(VersionSource::Header),
            Some(("query", q)) if !q.is_empty() && !q.contains(['&', '=', '%', '#']) => {
                Some(VersionSource::Query(q.to_string()))
            }
            _ => None,
        };
        match source {
            Some(src) if sources.contains(&src) => {
                p.add(s.pos, &index(&path, i), format!("`{}` is listed twice", s.value));
                ok = false;
            }
            Some(src) => sources.push(src),
            None => {
                p.add(
                    s.pos,
                    &index(&path, i),
                    format!(
                        "`{}`: expected path, header:NAME, media_type or query:NAME",
                        s.value
                    ),
                );
                ok = false;
            }
        }
    }
    if sources.is_empty() && ok {
        p.add(f.pos_of("from"), &path, "needs at least one source");
        return None;
    }
    ok.then_some(sources)
}

fn decode_version(name: Spanned<String>, node: &Node, path: &str, p: &mut Problems) -> Option<VersionConfig> {
    let f = Fields::new(node, path, VERSION_FIELDS, p)?;
    let upstream: Option<Spanned<String>> = f.req("upstream", p);
    let date = |key: &str, p: &mut Problems| -> Result<Option<i64>, ()> {
        match f.opt::<Spanned<String>>(key, p) {
            None => Ok(None),
            Some(s) => parse_date(&s.value)
                .map(Some)
                .map_err(|e| p.add(s.pos, &f.path_of(key), e)),
        }
    };
    let deprecated = date("deprecated", p);
    let sunset = date("sunset", p);
    let after_sunset = f.choice(
        "after_sunset",
        &[("serve", AfterSunset::Serve), ("gone", AfterSunset::Gone)],
        AfterSunset::Serve,
        p,
    );
    let link: Option<String> = f.opt("link", p);
    if link
        .as_deref()
        .is_some_and(|l| l.is_empty() || l.contains(['<', '>', '"', ' ', '\r', '\n']))
    {
        p.add(
            f.pos_of("link"),
            &f.path_of("link"),
            "must be a URL or path without spaces, quotes or angle brackets",
        );
        return None;
    }
    let split = match f.node("split") {
        None => Some(Vec::new()),
        Some(n) => decode_split(n, &f.path_of("split"), p),
    };
    let sticky = match f.opt::<Spanned<String>>("sticky", p) {
        None => Some(Sticky::Ip),
        Some(s) => match s.value.split_once(':') {
            None if s.value == "consumer" => Some(Sticky::Consumer),
            None if s.value == "ip" => Some(Sticky::Ip),
            Some(("header", h)) => HeaderName::from_bytes(h.as_bytes()).ok().map(Sticky::Header),
            _ => None,
        }
        .or_else(|| {
            p.add(
                s.pos,
                &f.path_of("sticky"),
                format!("`{}`: expected consumer, ip or header:NAME", s.value),
            );
            None
        }),
    };
    let override_header = match f.opt::<Spanned<String>>("override_header", p) {
        None => Some(None),
        Some(s) => header_name(&s, &f.path_of("override_header"), p).map(Some),
    };
    Some(VersionConfig {
        name,
        upstream: upstream?,
        deprecated: deprecated.ok()?,
        sunset: sunset.ok()?,
        successor: f.opt("successor", p),
        after_sunset: after_sunset?,
        link,
        split: split?,
        sticky: sticky?,
        override_header: override_header?,
    })
}

/// `split: [{ upstream: users-v3, percent: 5 }]`; percent may have two decimals (0.25).
fn decode_split(node: &Node, path: &str, p: &mut Problems) -> Option<Vec<SplitConfig>> {
    let items: Vec<Node> = match node {
        Node::Seq { items, .. } => items.clone(),
        other => {
            p.add(
                other.pos(),
                path,
                format!(
                    "expected a list such as [{{ upstream: users-v3, percent: 5 }}], found {}",
                    other.kind()
                ),
            );
            return None;
        }
    };
    let decoded: Vec<Option<SplitConfig>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let ipath = index(path, i);
            let f = Fields::new(item, &ipath, &["upstream", "percent"], p)?;
            let upstream: Option<Spanned<String>> = f.req("upstream", p);
            let percent: Spanned<String> = f.req("percent", p)?;
            let basis_points = parse_percent(&percent.value)
                .filter(|bp| (1..=10_000).contains(bp))
                .or_else(|| {
                    p.add(
                        percent.pos,
                        &f.path_of("percent"),
                        format!(
                            "`{}`: expected a percentage above 0 and at most 100, with at most two decimals",
                            percent.value
                        ),
                    );
                    None
                })?;
            Some(SplitConfig {
                upstream: upstream?,
                basis_points,
            })
        })
        .collect();
    decoded.into_iter().collect()
}

/// `5` -> 500, `0.25` -> 25, `12.5` -> 1250.
fn parse_percent(text: &str) -> Option<u32> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || frac.len() > 2 || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

/// Rules within one version: its successor exists, its shares fit, its dates are in order.
fn check_version(v: &VersionConfig, names: &[&str], path: &str, p: &mut Problems) -> bool {
    let mut ok = true;
    if let Some(s) = &v.successor {
        if s.value == v.name.value || !names.contains(&s.value.as_str()) {
            p.add(
                s.pos,
                &join(path, "successor"),
                format!(
                    "successor `{}` must be another of the versions ({})",
                    s.value,
                    names.join(", ")
                ),
            );
            ok = false;
        }
    }
    let total: u32 = v.split.iter().map(|s| s.basis_points).sum();
    if total > 10_000 {
        p.add(
            v.name.pos,
            &join(path, "split"),
            format!(
                "split percentages add up to {}.{:02}, over 100",
                total / 100,
                total % 100
            ),
        );
        ok = false;
    }
    if let (Some(d), Some(s)) = (v.deprecated, v.sunset) {
        if s < d {
            p.add(
                v.name.pos,
                &join(path, "sunset"),
                "sunset is before the deprecation date",
            );
            ok = false;
        }
    }
    if v.after_sunset == AfterSunset::Gone && v.sunset.is_none() {
        p.add(
            v.name.pos,
            &join(path, "after_sunset"),
            "after_sunset: gone needs a `sunset` date",
        );
        ok = false;
    }
    if v.override_header.is_some() && v.split.is_empty() {
        p.add(
            v.name.pos,
            &join(path, "override_header"),
            "override_header only applies to a version with a `split`",
        );
        ok = false;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_exact_hundredths() {
        assert_eq!(parse_percent("5"), Some(500));
        assert_eq!(parse_percent("0.25"), Some(25));
        assert_eq!(parse_percent("12.5"), Some(1250));
        assert_eq!(parse_percent("100"), Some(10_000));
        for bad in ["", ".5", "1.234", "-1", "5%", "1e2", "x"] {
            assert_eq!(parse_percent(bad), None, "{bad}");
        }
    }

    #[test]
    fn version_names() {
        for good in ["1", "2", "2.1", "2026-01-01", "3beta"] {
            assert!(is_version_name(good), "{good}");
        }
        for bad in ["v1", "", "beta", "1/2", "1 2"] {
            assert!(!is_version_name(bad), "{bad}");
        }
    }
}
