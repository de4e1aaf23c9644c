//! `transform.request.query`: remove, rename and set query parameters of the upstream request.
//!
//! Names compare the way frameworks read them (decoded, any case, PHP's `_` folding; see
//! `percent::names_param`), so a client cannot keep a removed parameter, or plant a value
//! beside one the gateway sets, by spelling its name differently. Rules run remove → rename →
//! set; a rename and a set replace every client spelling of the name they write.

use crate::config::QueryRules;
use crate::percent::{hides_param, names_param, split_pair};

pub fn apply(rules: &QueryRules, query: &str) -> String {
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(str::to_string)
        .collect();
    let names = pair_names;
    for param in &rules.remove {
        pairs.retain(|pair| !names(pair, param));
    }
    for (from, to) in &rules.rename {
        pairs.retain(|pair| !names(pair, to));
        for pair in &mut pairs {
            let name = split_pair(pair).0;
            if names_param(name, from) {
                // `from[]` and `from[x]` become `to[]` and `to[x]`: still an array.
                let renamed = format!("{}{}", encode(to), array_suffix(name));
                let value = split_pair(pair).1;
                *pair = if pair.contains('=') {
                    format!("{renamed}={value}")
                } else {
                    renamed
                };
            }
        }
    }
    for (name, value) in &rules.set {
        pairs.retain(|pair| !names(pair, name));
        pairs.push(format!("{}={}", encode(name), encode(value)));
    }
    pairs.join("&")
}

/// Whether a `name=value` pair is `param` to some framework: any spelling of the name,
/// an array of it (`param[]`), or a `;`-separated piece naming it.
fn pair_names(pair: &str, param: &str) -> bool {
    let name = split_pair(pair).0;
    names_param(name, param) || names_as_array(name, param) || hides_param(pair, param)
}

/// `query` without every pair any framework would read as one of `params` (see
/// [`pair_names`]): what a client adds cannot plant a value beside one the gateway sets.
pub fn without_params(query: &str, params: &[String]) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !params.iter().any(|p| pair_names(pair, p)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `debug[]` and `debug[x]` are `debug` to PHP, Rails and Express (`qs`): an array of it.
fn names_as_array(raw_name: &str, param: &str) -> bool {
    let decoded = crate::percent::decode_str(raw_name);
    let name = decoded.as_deref().unwrap_or(raw_name);
    name.split_once('[')
        .is_some_and(|(base, rest)| rest.contains(']') && names_param(base, param))
}

/// The bracketed suffix of a raw parameter name (`[]`, `%5Bx%5D`), as written; empty if none.
fn array_suffix(raw_name: &str) -> &str {
    let bracket = raw_name.find('[');
    let escaped = raw_name.to_ascii_lowercase().find("%5b");
    let at = match (bracket, escaped) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => match a.or(b) {
            Some(at) => at,
            None => return "",
        },
    };
    let suffix = &raw_name[at..];
    let decoded = crate::percent::decode_str(suffix);
    if decoded.is_some_and(|d| d.contains(']')) {
        suffix
    } else {
        ""
    }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    crate::percent::encode_component_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> QueryRules {
        QueryRules {
            set: vec![("source".into(), "gate way".into())],
            remove: vec!["debug".into()],
            rename: vec![("q".into(), "query".into())],
        }
    }

    #[test]
    fn remove_rename_set() {
        assert_eq!(
            apply(&rules(), "q=shoes&debug=1&page=2"),
            "query=shoes&page=2&source=gate%20way"
        );
    }

    #[test]
    fn client_spellings_cannot_survive_or_plant() {
        let out = apply(
            &rules(),
            "DEBUG=1&de%62ug=1&x=1;debug=1&debug[]=1&debug%5Bx%5D=1&Source=evil&so%75rce=evil&source[]=evil&query=planted&q=ok",
        );
        assert_eq!(out, "query=ok&source=gate%20way");
    }
}
