//! The services a `grpc:` route transcodes, from `.proto` files compiled at load (protox, no
//! `protoc`) or from a `FileDescriptorSet`; and each method's `google.api.http` bindings.
//!
//! `google/api/annotations.proto`, `google/api/http.proto`, `google/rpc/status.proto` and
//! `google/rpc/error_details.proto` ship inside the binary (vendored from googleapis, Apache
//! 2.0, under `protos/`): a `.proto` can import them without the operator finding them, and
//! error details (`google.rpc.Status`) print as JSON whatever the descriptors hold.

use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, MethodDescriptor, Value};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver};

/// The googleapis files that ship with Portcullis: (import name, source).
const BUNDLED: &[(&str, &str)] = &[
    (
        "google/api/annotations.proto",
        include_str!("../../protos/google/api/annotations.proto"),
    ),
    (
        "google/api/http.proto",
        include_str!("../../protos/google/api/http.proto"),
    ),
    (
        "google/rpc/status.proto",
        include_str!("../../protos/google/rpc/status.proto"),
    ),
    (
        "google/rpc/error_details.proto",
        include_str!("../../protos/google/rpc/error_details.proto"),
    ),
];

/// The types error details are printed with, always added to a route's pool.
const ERROR_FILES: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];

/// The name of the `HttpRule` extension.
pub const HTTP_EXTENSION: &str = "google.api.http";

/// Files held in memory: (import name, source).
struct Sources(&'static [(&'static str, &'static str)]);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.iter().find(|(n, _)| *n == name) {
            Some((n, source)) => File::from_source(n, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compile `files` (paths relative to `base_dir` unless absolute), importing from `includes`
/// (then each file's own directory), the bundled googleapis files and protobuf's well-known
/// types.
pub fn compile(files: &[String], includes: &[String], base_dir: &Path) -> Result<DescriptorPool, String> {
    let resolve = |p: &String| -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        }
    };
    let files: Vec<PathBuf> = files.iter().map(resolve).collect();
    let mut dirs: Vec<PathBuf> = includes.iter().map(resolve).collect();
    for f in &files {
        if let Some(parent) = f.parent() {
            if !dirs.iter().any(|d| d == parent) {
                dirs.push(parent.to_path_buf());
            }
        }
    }
    let mut chain = ChainFileResolver::new();
    for d in &dirs {
        chain.add(IncludeFileResolver::new(d.clone()));
    }
    finish(chain, &files)
}

/// Compile `.proto` sources held in memory (`(import name, source)`; the demo's service), with
/// the same imports as [`compile`].
pub fn compile_sources(files: &'static [(&'static str, &'static str)]) -> Result<DescriptorPool, String> {
    let mut chain = ChainFileResolver::new();
    chain.add(Sources(files));
    let names: Vec<PathBuf> = files.iter().map(|(n, _)| PathBuf::from(n)).collect();
    finish(chain, &names)
}

/// Add the bundled files and the well-known types to `chain`, compile `files` and the bundled
/// error types.
fn finish(mut chain: ChainFileResolver, files: &[PathBuf]) -> Result<DescriptorPool, String> {
    chain.add(Sources(BUNDLED));
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    for f in files {
        compiler
            .open_file(f)
            .map_err(|e| format!("compiling {}: {}", f.display(), describe(&e)))?;
    }
    for name in ERROR_FILES {
        compiler
            .open_file(name)
            .map_err(|e| format!("compiling the bundled {name}: {}", describe(&e)))?;
    }
    Ok(compiler.descriptor_pool())
}

/// A protox error with where it happened (`file:line:col`) when it knows.
fn describe(e: &protox::Error) -> String {
    use miette::Diagnostic;
    let text = e.to_string();
    let label = e.labels().and_then(|mut l| l.next());
    if let (Some(source), Some(label)) = (e.source_code(), label) {
        if let Ok(at) = source.read_span(label.inner(), 0, 0) {
            let file = at.name().or(e.file()).unwrap_or("?");
            return format!("{file}:{}:{}: {text}", at.line() + 1, at.column() + 1);
        }
    }
    match e.file() {
        Some(file) if !text.contains(file) => format!("{file}: {text}"),
        _ => text,
    }
}

/// Decode a `FileDescriptorSet` (built with `protoc --include_imports`). The bundled error
/// types are added when the set does not hold them.
pub fn decode_set(bytes: &[u8]) -> Result<DescriptorPool, String> {
    let mut pool = DescriptorPool::decode(bytes).map_err(|e| {
        let text = e.to_string();
        if text.contains("imported file") {
            format!("an incomplete FileDescriptorSet ({text}): build it with protoc --include_imports")
        } else {
            format!("not a FileDescriptorSet: {text}")
        }
    })?;
    if pool.get_message_by_name("google.rpc.Status").is_none() {
        let errors = compile(&[], &[], Path::new("."))?;
        let protos: Vec<_> = errors
            .files()
            .filter(|f| ERROR_FILES.contains(&f.name()) || f.name().starts_with("google/protobuf/"))
            .filter(|f| pool.get_file_by_name(f.name()).is_none())
            .map(|f| f.file_descriptor_proto().clone())
            .collect();
        // A set that already defines some of these under other files would conflict: then
        // details print in their raw form, which is still an answer.
        let _ = pool.add_file_descriptor_protos(protos);
    }
    Ok(pool)
}

/// One HTTP binding of a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBinding {
    /// `GET`, `POST`, … or a custom verb's method name.
    pub method: String,
    pub template: String,
    /// `*`, a field name, or none.
    pub body: Option<String>,
    /// The response field sent instead of the whole message.
    pub response_body: Option<String>,
}

/// The bindings of `method`'s `google.api.http` option (with its `additional_bindings`), or
/// none. `None` when the pool does not know the extension at all.
pub fn http_bindings(pool: &DescriptorPool, method: &MethodDescriptor) -> Option<Vec<HttpBinding>> {
    let ext = pool.get_extension_by_name(HTTP_EXTENSION)?;
    let options = method.options();
    if !options.has_extension(&ext) {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    if let Value::Message(rule) = options.get_extension(&ext).as_ref() {
        push_rule(rule, true, &mut out);
    }
    Some(out)
}

fn push_rule(rule: &prost_reflect::DynamicMessage, top: bool, out: &mut Vec<HttpBinding>) {
    let text = |name: &str| {
        rule.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
    };
    let mut pattern = None;
    for verb in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(verb) {
            pattern = text(verb).map(|t| (verb.to_ascii_uppercase(), t));
        }
    }
    if rule.has_field_by_name("custom") {
        if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
            let kind = custom
                .get_field_by_name("kind")
                .and_then(|v| v.as_str().map(str::to_string));
            let path = custom
                .get_field_by_name("path")
                .and_then(|v| v.as_str().map(str::to_string));
            if let (Some(kind), Some(path)) = (kind, path) {
                pattern = Some((kind, path));
            }
        }
    }
    if let Some((method, template)) = pattern {
        out.push(HttpBinding {
            method,
            template,
            body: text("body"),
            response_body: text("response_body"),
        });
    }
    if top {
        if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
            for m in more {
                if let Value::Message(m) = m {
                    push_rule(m, false, out);
                }
            }
        }
    }
}
