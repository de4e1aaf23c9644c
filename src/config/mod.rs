//! Configuration: YAML text -> positioned tree -> typed [`Config`] -> cross-item validation.
//!
//! Every problem is collected (not just the first) so `portcullis check` and a refused start
//! print the same complete list.

pub mod access_log_schema;
pub mod aggregate_model;
mod aggregate_schema;
pub mod auth_model;
mod auth_schema;
pub mod cache_schema;
pub mod cidr;
pub mod client_header_names;
mod cors_schema;
mod credential_schema;
pub mod date;
pub mod decode;
pub mod diag;
mod dns_schema;
pub mod duration;
pub mod grpc_schema;
mod ip_schema;
pub mod jwt_schema;
pub mod limits_model;
mod limits_schema;
mod listener_schema;
pub mod model;
mod outlier_schema;
pub mod redis_model;
mod redis_schema;
mod retry_schema;
mod route_schema;
mod schema;
mod server_schema;
pub mod size;
pub mod tracing_schema;
pub mod transform_model;
mod transform_schema;
mod upstream_schema;
mod upstream_tls_schema;
mod validate;
mod values;
pub mod versions_model;
mod versions_schema;
pub mod yaml;

pub use aggregate_model::*;
pub use auth_model::*;
pub use diag::Problems;
pub use grpc_schema::{GrpcConfig, StreamFormat};
pub use limits_model::*;
pub use model::*;
pub use redis_model::*;
pub use transform_model::*;
pub use versions_model::*;

/// The largest configuration file (or keys / key-set file) read: a 20,000-route file is
/// about 2 MiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Read and validate the configuration file at `path`.
pub fn load_file(path: &str) -> Result<Config, Problems> {
    match read_bounded(std::path::Path::new(path)) {
        Ok(text) => load_str(&text, path),
        Err(e) => {
            let mut p = Problems::new(path);
            p.add_unpositioned("", format!("cannot read configuration file: {e}"));
            Err(p)
        }
    }
}

/// A file of at most [`MAX_FILE_BYTES`], read without ever holding more.
pub fn read_bounded_bytes(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "the file is larger than {} MiB",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    Ok(bytes)
}

/// The value of the environment variable `name` names (a token, a password, a key), at least
/// `min_bytes` long; the problem otherwise, at the field that names it. The value is never put
/// into a message.
pub(crate) fn env_secret(
    name: &decode::Spanned<String>,
    path: &str,
    min_bytes: usize,
    p: &mut diag::Problems,
) -> Option<String> {
    let mut chars = name.value.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    let problem = if !valid {
        format!("`{}` is not an environment variable name", name.value)
    } else {
        match std::env::var(&name.value) {
            Ok(v) if v.len() >= min_bytes => return Some(v),
            Ok(_) => format!("the value of ${} is shorter than {min_bytes} bytes", name.value),
            Err(_) => format!("environment variable {} is not set", name.value),
        }
    };
    p.add(name.pos, path, problem);
    None
}

/// A UTF-8 text file of at most [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &std::path::Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded_bytes(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
}

/// Validate configuration `text`; `file` names it in messages.
pub fn load_str(text: &str, file: &str) -> Result<Config, Problems> {
    let mut p = Problems::new(file);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            p.add(e.pos, "", e.message);
            return Err(p);
        }
    };
    let upstream_names = upstream_names(&root);
    let base_dir = std::path::Path::new(file)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let parts = schema::decode_parts(&root, base_dir, &mut p);
    validate::validate(&parts, &upstream_names, &mut p);
    p.items
        .sort_by_key(|i| i.pos.map(|pos| (pos.line, pos.col)).unwrap_or((usize::MAX, 0)));
    p.items.dedup();
    match parts.into_config() {
        Some(mut c) if p.is_empty() => {
            c.source_sha256 = crate::auth::api_key::sha256_hex_bytes(text.as_bytes());
            Ok(c)
        }
        _ => Err(p),
    }
}

/// Every upstream name declared, even in upstreams that have other problems.
fn upstream_names(root: &yaml::Node) -> Vec<String> {
    let yaml::Node::Map { entries, .. } = root else {
        return Vec::new();
    };
    let Some((_, yaml::Node::Map { entries: ups, .. })) = entries
        .iter()
        .find(|(k, _)| matches!(k, yaml::Node::Scalar { value, .. } if value == "upstreams"))
    else {
        return Vec::new();
    };
    ups.iter()
        .filter_map(|(k, _)| match k {
            yaml::Node::Scalar { value, .. } => Some(value.clone()),
            _ => None,
        })
        .collect()
}
