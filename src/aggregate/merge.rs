//! Merging the parts' documents into one, deterministically: parts are merged in the order
//! the route declares them, whatever order they answered in, so the same inputs always give
//! byte-identical output (KrakenD's merge depends on arrival order; this one cannot).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Top-level keys only: a key two parts both set is a conflict.
    Shallow,
    /// Objects merge recursively; only non-object values (or arrays, see [`Arrays`]) conflict.
    Deep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The merge fails, naming the parts (the route answers 502).
    Error,
    /// The part declared first keeps the value.
    First,
    /// The part declared last sets the value.
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrays {
    /// Two arrays at one path conflict like any two values.
    Replace,
    /// Two arrays at one path are concatenated in declaration order (deep merge).
    Concat,
}

/// Where a part's document goes in the merged answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Nested under this key (by default the part's name).
    Key(String),
    /// Its keys merged into the root (the document must be an object).
    Root,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub mode: Mode,
    pub on_conflict: OnConflict,
    pub arrays: Arrays,
}

/// Why a merge failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// Two parts set the same path (with `on_conflict: error`).
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    /// A part merged into the root is not an object.
    NotAnObject { part: String },
}

/// One part's answer, in declaration order.
pub struct PartDoc<'a> {
    pub name: &'a str,
    pub placement: &'a Placement,
    pub doc: Value,
}

/// Merge the parts' documents, in the order given (the declaration order).
pub fn merge(parts: Vec<PartDoc<'_>>, policy: Policy) -> Result<Value, MergeError> {
    let mut root = Map::new();
    // Which part set each top-level key, to name both sides of a conflict (a map: a part with
    // 100,000 keys must not cost 100,000² comparisons).
    let mut owners: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for part in parts {
        let incoming = match (part.placement, part.doc) {
            (Placement::Key(key), doc) => {
                let mut one = Map::new();
                one.insert(key.clone(), doc);
                one
            }
            (Placement::Root, Value::Object(map)) => map,
            (Placement::Root, _) => {
                return Err(MergeError::NotAnObject {
                    part: part.name.to_string(),
                })
            }
        };
        for (key, value) in incoming {
            match root.get_mut(&key) {
                None => {
                    root.insert(key.clone(), value);
                    owners.insert(key, part.name);
                }
                Some(existing) => {
                    let first = owners.get(&key).copied().unwrap_or_default();
                    merge_value(existing, value, &key, policy, first, part.name)?;
                }
            }
        }
    }
    Ok(Value::Object(root))
}

fn merge_value(
    existing: &mut Value,
    incoming: Value,
    path: &str,
    policy: Policy,
    first: &str,
    second: &str,
) -> Result<(), MergeError> {
    match (existing, incoming, policy.mode, policy.arrays) {
        (Value::Object(have), Value::Object(add), Mode::Deep, _) => {
            for (key, value) in add {
                let child = format!("{path}.{key}");
                match have.get_mut(&key) {
                    None => {
                        have.insert(key, value);
                    }
                    Some(slot) => merge_value(slot, value, &child, policy, first, second)?,
                }
            }
            Ok(())
        }
        (Value::Array(have), Value::Array(add), Mode::Deep, Arrays::Concat) => {
            have.extend(add);
            Ok(())
        }
        (slot, value, _, _) => match policy.on_conflict {
            OnConflict::Error => Err(MergeError::Conflict {
                path: path.to_string(),
                first: first.to_string(),
                second: second.to_string(),
            }),
            OnConflict::First => Ok(()),
            OnConflict::Last => {
                *slot = value;
                Ok(())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(mode: Mode, on_conflict: OnConflict, arrays: Arrays) -> Policy {
        Policy {
            mode,
            on_conflict,
            arrays,
        }
    }

    fn run(docs: &[(&str, Placement, Value)], p: Policy) -> Result<Value, MergeError> {
        merge(
            docs.iter()
                .map(|(name, placement, doc)| PartDoc {
                    name,
                    placement,
                    doc: doc.clone(),
                })
                .collect(),
            p,
        )
    }

    #[test]
    fn nested_and_root_parts_in_declaration_order() {
        let out = run(
            &[
                ("user", Placement::Key("user".into()), json!({"id": 7})),
                ("orders", Placement::Key("orders".into()), json!([1, 2])),
                ("prefs", Placement::Root, json!({"theme": "dark", "lang": "nb"})),
            ],
            policy(Mode::Shallow, OnConflict::Error, Arrays::Replace),
        )
        .unwrap();
        assert_eq!(
            out.to_string(),
            r#"{"user":{"id":7},"orders":[1,2],"theme":"dark","lang":"nb"}"#
        );
    }

    #[test]
    fn conflicts_follow_the_policy_never_arrival_order() {
        let parts = [
            ("a", Placement::Root, json!({"x": 1, "o": {"p": 1, "l": [1]}})),
            ("b", Placement::Root, json!({"x": 2, "o": {"q": 2, "l": [2]}})),
        ];
        let shallow_error = run(&parts, policy(Mode::Shallow, OnConflict::Error, Arrays::Replace));
        assert_eq!(
            shallow_error,
            Err(MergeError::Conflict {
                path: "x".into(),
                first: "a".into(),
                second: "b".into()
            })
        );
        let first = run(&parts, policy(Mode::Shallow, OnConflict::First, Arrays::Replace)).unwrap();
        assert_eq!(first, json!({"x": 1, "o": {"p": 1, "l": [1]}}));
        let last = run(&parts, policy(Mode::Shallow, OnConflict::Last, Arrays::Replace)).unwrap();
        assert_eq!(last, json!({"x": 2, "o": {"q": 2, "l": [2]}}));
        let deep = run(&parts, policy(Mode::Deep, OnConflict::Last, Arrays::Concat)).unwrap();
        assert_eq!(deep, json!({"x": 2, "o": {"p": 1, "l": [1, 2], "q": 2}}));
        let deep_error = run(&parts, policy(Mode::Deep, OnConflict::Error, Arrays::Concat));
        assert!(matches!(deep_error, Err(MergeError::Conflict { ref path, .. }) if path == "x"));
    }

    #[test]
    fn a_root_part_must_be_an_object() {
        let out = run(
            &[("list", Placement::Root, json!([1]))],
            policy(Mode::Shallow, OnConflict::Error, Arrays::Replace),
        );
        assert_eq!(out, Err(MergeError::NotAnObject { part: "list".into() }));
    }
}
