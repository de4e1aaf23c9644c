//! Decoding `auth:` and the route-level `auth`, `require` and `forward_credential` fields.
//! API-key files are read here, once, so `check` reports their problems and a reload picks up
//! key changes.

use std::path::Path;

use serde::Deserialize;

use super::auth_model::*;
use super::credential_schema::{forward_headers, sources};
use super::decode::{named_items, Fields, Spanned};
use super::diag::Problems;
use super::yaml::Node;

/// Decode the `auth:` mapping; names of broken authenticators are still returned so routes
/// naming them are not also reported as naming an undefined one.
pub fn decode_auth(node: &Node, base_dir: &Path, p: &mut Problems) -> (Vec<AuthConfig>, Vec<String>) {
    let fields: Vec<&str> = API_KEY_FIELDS
        .iter()
        .chain(super::jwt_schema::FIELDS)
        .chain(MTLS_FIELDS)
        .copied()
        .collect();
    named_items(
        node,
        "auth",
        "authenticator",
        &fields,
        p,
        |name, value, path, p| {
            decode_authenticator(value, path, base_dir, p).map(|kind| AuthConfig { name, kind })
        },
    )
}

fn decode_authenticator(node: &Node, path: &str, base_dir: &Path, p: &mut Problems) -> Option<AuthKind> {
    let kind = match node {
        Node::Map { entries, .. } => entries.iter().find_map(|(k, v)| match (k, v) {
            (Node::Scalar { value: key, .. }, Node::Scalar { value, .. }) if key == "type" => {
                Some(value.clone())
            }
            _ => None,
        }),
        _ => None,
    };
    match kind.as_deref() {
        Some("api_key") => decode_api_key(node, path, base_dir, p).map(AuthKind::ApiKey),
        Some("jwt") => super::jwt_schema::decode_jwt(node, path, base_dir, p).map(AuthKind::Jwt),
        Some("mtls") => decode_mtls(node, path, p).map(AuthKind::Mtls),
        Some(other) => {
            p.add(
                node.pos(),
                &format!("{path}.type"),
                format!("unknown authenticator type `{other}`; expected jwt, api_key or mtls"),
            );
            None
        }
        None => {
            p.add(
                node.pos(),
                &format!("{path}.type"),
                "missing required field `type` (jwt, api_key or mtls)",
            );
            None
        }
    }
}

const API_KEY_FIELDS: &[&str] = &["type", "from", "keys_file", "forward"];
const MTLS_FIELDS: &[&str] = &["type", "subjects", "forward", "listeners"];

/// `subjects`: names (`partner-a.example.com`: the consumer is the name), or
/// `{ name, consumer, plan, scopes, roles }`.
fn decode_mtls(node: &Node, path: &str, p: &mut Problems) -> Option<MtlsConfig> {
    let f = Fields::new(node, path, MTLS_FIELDS, p)?;
    let forward = forward_headers(&f, "forward", &["consumer", "plan"], p);
    let subjects_path = f.path_of("subjects");
    let items = match f.node("subjects") {
        Some(Node::Seq { items, .. }) if !items.is_empty() => items,
        Some(other) => {
            p.add(
                other.pos(),
                &subjects_path,
                "expected a list of certificate names (at least one)",
            );
            return None;
        }
        None => {
            p.add(
                f.pos(),
                &subjects_path,
                "missing required field `subjects`: the certificate names (common name or \
                 subject alternative name) this authenticator accepts",
            );
            return None;
        }
    };
    let mut subjects = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = super::decode::index(&subjects_path, i);
        let subject = match item {
            Node::Scalar { value, .. } => Some(MtlsSubject {
                name: value.clone(),
                consumer: value.clone(),
                plan: None,
                scopes: Vec::new(),
                roles: Vec::new(),
            }),
            _ => Fields::new(
                item,
                &item_path,
                &["name", "consumer", "plan", "scopes", "roles"],
                p,
            )
            .and_then(|s| {
                let name: Option<String> = s.req("name", p);
                let consumer: Option<String> = s.opt("consumer", p);
                let plan: Option<String> = s.opt("plan", p);
                let scopes: Vec<String> = s.or("scopes", Vec::new(), p);
                let roles: Vec<String> = s.or("roles", Vec::new(), p);
                let name = name?;
                Some(MtlsSubject {
                    consumer: consumer.unwrap_or_else(|| name.clone()),
                    name,
                    plan,
                    scopes,
                    roles,
                })
            }),
        };
        match subject {
            Some(s) if s.name.is_empty() || s.consumer.is_empty() => {
                p.add(
                    item.pos(),
                    &item_path,
                    "a subject needs a name and a consumer that are not empty",
                );
                ok = false;
            }
            Some(s) if subjects.iter().any(|o: &MtlsSubject| o.name == s.name) => {
                p.add(item.pos(), &item_path, format!("`{}` is listed twice", s.name));
                ok = false;
            }
            Some(s) => subjects.push(s),
            None => ok = false,
        }
    }
    (ok).then_some(())?;
    Some(MtlsConfig {
        subjects,
        listeners: f.or("listeners", Vec::new(), p),
        forward: forward?,
    })
}

fn decode_api_key(node: &Node, path: &str, base_dir: &Path, p: &mut Problems) -> Option<ApiKeyConfig> {
    let f = Fields::new(node, path, API_KEY_FIELDS, p)?;
    // Decode every field before combining, so one run reports all of their problems.
    let from = sources(&f, "from", p);
    let keys_file: Option<Spanned<String>> = f.req("keys_file", p);
    let keys = keys_file.and_then(|file| load_keys(&file, &f.path_of("keys_file"), base_dir, p));
    let forward = forward_headers(&f, "forward", &["consumer", "plan"], p);
    Some(ApiKeyConfig {
        from: from?,
        keys: keys?,
        forward: forward?,
    })
}

/// The keys file: `keys: [{ sha256, consumer, plan?, scopes?, roles? }]`. Only hashes are
/// stored, so the file does not hold usable secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyRecord>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    sha256: String,
    consumer: String,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

fn load_keys(
    file: &Spanned<String>,
    path: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Vec<ApiKeyEntry>> {
    let full = base_dir.join(&file.value);
    let text = match super::read_bounded(&full) {
        Ok(t) => t,
        Err(e) => {
            p.add(
                file.pos,
                path,
                format!("cannot read keys file {}: {e}", full.display()),
            );
            return None;
        }
    };
    let parsed: KeysFile = match serde_yaml::from_str(&text) {
        Ok(k) => k,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("{}:{}:{}: ", full.display(), l.line(), l.column()))
                .unwrap_or_default();
            p.add(file.pos, path, format!("keys file: {at}{e}"));
            return None;
        }
    };
    let mut out: Vec<ApiKeyEntry> = Vec::with_capacity(parsed.keys.len());
    let mut ok = true;
    for (i, k) in parsed.keys.into_iter().enumerate() {
        let Some(sha256) = decode_hex32(&k.sha256) else {
            p.add(
                file.pos,
                path,
                format!(
                    "keys file {}: keys[{i}].sha256 must be 64 hex digits",
                    full.display()
                ),
            );
            ok = false;
            continue;
        };
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if let Some(bad) = k.scopes.iter().chain(&k.roles).find(|s| !is_scope_token(s)) {
            p.add(
                file.pos,
                path,
                format!(
                    "keys file {}: keys[{i}]: `{bad}` is not a scope token (visible ASCII, no space, quote or backslash)",
                    full.display()
                ),
            );
            ok = false;
            continue;
        }
        if !plain(&k.consumer) || k.plan.as_deref().is_some_and(|pl| !plain(pl)) {
            p.add(
                file.pos,
                path,
                format!(
                    "keys file {}: keys[{i}]: consumer and plan must be visible ASCII without spaces",
                    full.display()
                ),
            );
            ok = false;
            continue;
        }
        if out.iter().any(|e| e.sha256 == sha256) {
            p.add(
                file.pos,
                path,
                format!("keys file {}: keys[{i}] repeats an earlier key", full.display()),
            );
            ok = false;
            continue;
        }
        out.push(ApiKeyEntry {
            sha256,
            consumer: k.consumer,
            plan: k.plan,
            scopes: k.scopes,
            roles: k.roles,
        });
    }
    ok.then_some(out)
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// The route fields `auth`, `require` and `forward_credential`.
pub fn decode_route_auth(f: &Fields<'_>, p: &mut Problems) -> Option<RouteAuthConfig> {
    let authenticators: Vec<Spanned<String>> = f.or("auth", Vec::new(), p);
    let require = match f.node("require") {
        None | Some(Node::Null { .. }) => None,
        Some(n) => Some(decode_require(n, &f.path_of("require"), p)?),
    };
    if require.is_some() && authenticators.is_empty() {
        p.add(
            f.pos(),
            &f.path_of("require"),
            "`require` needs `auth` on the same route",
        );
    }
    Some(RouteAuthConfig {
        authenticators,
        require,
        forward_credential: f.or("forward_credential", false, p),
    })
}

fn decode_require(node: &Node, path: &str, p: &mut Problems) -> Option<RequireConfig> {
    let f = Fields::new(node, path, &["scopes", "roles", "claims", "mode"], p)?;
    let claims: super::decode::Entries<String> = f.or("claims", super::decode::Entries::default(), p);
    let mode = f.choice(
        "mode",
        &[("all", RequireMode::All), ("any", RequireMode::Any)],
        RequireMode::All,
        p,
    )?;
    let require = RequireConfig {
        scopes: f.or("scopes", Vec::new(), p),
        roles: f.or("roles", Vec::new(), p),
        claims: claims.0.into_iter().map(|(k, v)| (k.value, v)).collect(),
        mode,
    };
    // Scopes are named in the WWW-Authenticate challenge: RFC 6749 scope-tokens only.
    let scope_token = |s: &String| is_scope_token(s);
    for (what, list) in [("scopes", &require.scopes), ("roles", &require.roles)] {
        if let Some(bad) = list.iter().find(|s| !scope_token(s)) {
            p.add(
                f.pos(),
                &f.path_of(what),
                format!("`{bad}` is not a valid scope token (visible ASCII, no space, quote or backslash)"),
            );
        }
    }
    if require.scopes.is_empty() && require.roles.is_empty() && require.claims.is_empty() {
        p.add(f.pos(), path, "`require` lists no scopes, roles or claims");
    }
    Some(require)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        let h = "00ff".repeat(16);
        let d = decode_hex32(&h).unwrap();
        assert_eq!(d[0], 0);
        assert_eq!(d[1], 255);
        assert!(decode_hex32("zz").is_none());
        assert!(decode_hex32(&"g".repeat(64)).is_none());
    }
}
