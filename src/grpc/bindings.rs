//! A `grpc:` route's HTTP surface: every binding of its services' methods (from
//! `google.api.http`, and `POST /pkg.Service/Method` with `auto_mapping`), checked once at
//! load, and the lookup of the binding a request takes.
//!
//! When several bindings of one HTTP method match a path, the one with a verb wins, then the
//! one with more literal segments, then the one without `**`, then the first declared (two
//! bindings of identical shape are refused by `check`).

use http::Method;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use super::descriptors::{http_bindings, HttpBinding, HTTP_EXTENSION};
use super::message::BodyField;
use super::template::{Binding as Bound, Template};

/// One method a route can call.
#[derive(Debug, Clone)]
pub struct Rpc {
    /// `/pkg.Service/Method`, the gRPC request path.
    pub path: String,
    pub desc: MethodDescriptor,
}

impl Rpc {
    pub fn server_streaming(&self) -> bool {
        self.desc.is_server_streaming()
    }
}

/// One HTTP binding of a method.
#[derive(Debug, Clone)]
pub struct Binding {
    pub method: Method,
    pub template: Template,
    pub body: BodyField,
    pub response_body: Option<String>,
    /// Index in [`Table::rpcs`].
    pub rpc: usize,
    /// Literal segments (the precedence above).
    literals: usize,
    rest: bool,
}

/// Every binding of a route.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub rpcs: Vec<Rpc>,
    pub bindings: Vec<Binding>,
}

/// What a request path and method find.
pub enum Found<'a> {
    Binding(&'a Binding, Vec<Bound>),
    /// The path has bindings, but not for this method: these are (for `Allow`).
    WrongMethod(Vec<Method>),
    /// A binding matches, but this path variable's value is not UTF-8 once decoded.
    Undecodable(String),
    NotFound,
}

impl Table {
    /// Build the table of `services` from `pool`; every problem, each with the index of the
    /// service it concerns.
    pub fn compile(
        pool: &DescriptorPool,
        services: &[String],
        auto_mapping: bool,
    ) -> Result<Table, Vec<(usize, String)>> {
        let mut problems = Vec::new();
        let mut table = Table::default();
        let has_extension = pool.get_extension_by_name(HTTP_EXTENSION).is_some();
        if !has_extension && !auto_mapping {
            problems.push((
                0,
                "the descriptors do not hold the `google.api.http` extension (import google/api/annotations.proto; a descriptor set must be built with --include_imports), and `auto_mapping` is off: no method has an HTTP binding".to_string(),
            ));
        }
        for (i, name) in services.iter().enumerate() {
            let Some(service) = pool.get_service_by_name(name) else {
                let known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
                problems.push((
                    i,
                    format!(
                        "service `{name}` is not in the descriptors (they define: {})",
                        if known.is_empty() {
                            "no services".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
                continue;
            };
            let mut bound_any = false;
            for m in service.methods() {
                let path = format!("/{}/{}", service.full_name(), m.name());
                if m.is_client_streaming() {
                    let shape = if m.is_server_streaming() {
                        "bidirectional"
                    } else {
                        "client"
                    };
                    problems.push((
                        i,
                        format!("`{path}` is a {shape}-streaming method: transcoding serves unary and server-streaming methods only (proxy it as gRPC on a route with `upstream:` instead)"),
                    ));
                    continue;
                }
                let rpc = table.rpcs.len();
                table.rpcs.push(Rpc {
                    path: path.clone(),
                    desc: m.clone(),
                });
                let mut rules = http_bindings(pool, &m).unwrap_or_default();
                if auto_mapping {
                    rules.push(HttpBinding {
                        method: "POST".into(),
                        template: path.clone(),
                        body: Some("*".into()),
                        response_body: None,
                    });
                }
                for rule in rules {
                    match binding(&m, &rule, rpc) {
                        Ok(b) => {
                            bound_any = true;
                            table.bindings.push(b);
                        }
                        Err(why) => problems.push((i, format!("`{path}`: {why}"))),
                    }
                }
            }
            if !bound_any && has_extension {
                problems.push((
                    i,
                    format!("service `{name}` has no method with a `google.api.http` annotation (and `auto_mapping` is off): nothing would be reachable"),
                ));
            }
        }
        for (a, x) in table.bindings.iter().enumerate() {
            for y in &table.bindings[a + 1..] {
                if x.method == y.method
                    && x.template.overlaps(&y.template)
                    && y.template.overlaps(&x.template)
                    && same_shape(x, y)
                {
                    problems.push((
                        0,
                        format!(
                            "`{} {}` ({}) and `{} {}` ({}) match the same requests",
                            x.method,
                            x.template.source(),
                            table.rpcs[x.rpc].path,
                            y.method,
                            y.template.source(),
                            table.rpcs[y.rpc].path
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems)
        }
    }

    /// The binding `method` and `path` take (HEAD takes the GET binding).
    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let method = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let mut best: Option<(&Binding, Vec<Bound>)> = None;
        let mut allowed: Vec<Method> = Vec::new();
        for b in &self.bindings {
            let bound = match b.template.matches(path) {
                None => continue,
                Some(Err(field)) if b.method == *method => return Found::Undecodable(field),
                Some(Err(_)) => Vec::new(),
                Some(Ok(bound)) => bound,
            };
            if b.method != *method {
                if !allowed.contains(&b.method) {
                    allowed.push(b.method.clone());
                }
                continue;
            }
            let better = match &best {
                None => true,
                Some((cur, _)) => b.precedence() > cur.precedence(),
            };
            if better {
                best = Some((b, bound));
            }
        }
        match (best, allowed.is_empty()) {
            (Some((b, bound)), _) => Found::Binding(b, bound),
            (None, false) => Found::WrongMethod(allowed),
            (None, true) => Found::NotFound,
        }
    }

    /// A path that each binding matches (variables and wildcards as `x`), for `check`.
    pub fn samples(&self) -> impl Iterator<Item = (&Binding, String)> {
        self.bindings.iter().map(|b| (b, b.template.sample()))
    }
}

impl Binding {
    /// A binding with a verb first (`/v1/orders/{id}:cancel` is not `GetOrder` with id
    /// `7:cancel`), then more literal segments, then one without `**`.
    fn precedence(&self) -> (bool, usize, bool) {
        (self.template.has_verb(), self.literals, !self.rest)
    }
}

fn same_shape(x: &Binding, y: &Binding) -> bool {
    x.literals == y.literals && x.rest == y.rest
}

fn binding(m: &MethodDescriptor, rule: &HttpBinding, rpc: usize) -> Result<Binding, String> {
    let template = Template::parse(&rule.template).map_err(|e| e.0)?;
    let method = Method::from_bytes(rule.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", rule.method))?;
    let input = m.input();
    for field in template.fields() {
        check_field_path(&input, field).map_err(|why| format!("path template `{}`: {why}", rule.template))?;
    }
    let body = match rule.body.as_deref() {
        None => BodyField::None,
        Some("*") => BodyField::Whole,
        Some(f) => {
            if input.get_field_by_name(f).is_none() {
                return Err(format!("body `{f}` is not a field of {}", input.full_name()));
            }
            BodyField::Field(f.to_string())
        }
    };
    if let Some(f) = &rule.response_body {
        if m.output().get_field_by_name(f).is_none() {
            return Err(format!(
                "response_body `{f}` is not a field of {}",
                m.output().full_name()
            ));
        }
    }
    let (literals, rest) = template.shape();
    Ok(Binding {
        method,
        template,
        body,
        response_body: rule.response_body.clone(),
        rpc,
        literals,
        rest,
    })
}

/// A path variable must name a singular scalar field (through singular message fields).
fn check_field_path(input: &prost_reflect::MessageDescriptor, dotted: &str) -> Result<(), String> {
    let mut message = input.clone();
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(field) = message.get_field_by_name(part) else {
            return Err(format!("`{dotted}` is not a field of {}", input.full_name()));
        };
        if field.is_list() || field.is_map() {
            return Err(format!("`{dotted}` is repeated; a path variable binds one value"));
        }
        match (field.kind(), i + 1 == parts.len()) {
            (prost_reflect::Kind::Message(m), false) => message = m,
            (prost_reflect::Kind::Message(m), true) if !m.full_name().starts_with("google.protobuf.") => {
                return Err(format!(
                    "`{dotted}` is a message; a path variable binds a scalar field"
                ))
            }
            (_, false) => return Err(format!("`{dotted}`: `{part}` has no fields")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(method: Method, template: &str, rpc: usize) -> Binding {
        let template = Template::parse(template).expect("parses");
        let (literals, rest) = template.shape();
        Binding {
            method,
            template,
            body: BodyField::None,
            response_body: None,
            rpc,
            literals,
            rest,
        }
    }

    fn found(table: &Table, method: Method, path: &str) -> Option<usize> {
        match table.find(&method, path) {
            Found::Binding(b, _) => Some(b.rpc),
            _ => None,
        }
    }

    #[test]
    fn a_verb_then_literals_then_no_double_star_win() {
        let table = Table {
            rpcs: Vec::new(),
            bindings: vec![
                binding(Method::GET, "/v1/orders/{id}", 0),
                binding(Method::GET, "/v1/orders/{id}:summary", 1),
                binding(Method::GET, "/v1/{name=**}", 2),
                binding(Method::GET, "/v1/orders/latest", 3),
            ],
        };
        assert_eq!(found(&table, Method::GET, "/v1/orders/7:summary"), Some(1));
        assert_eq!(found(&table, Method::GET, "/v1/orders/7"), Some(0));
        assert_eq!(found(&table, Method::GET, "/v1/orders/latest"), Some(3));
        assert_eq!(found(&table, Method::GET, "/v1/a/b"), Some(2));
        assert_eq!(
            found(&table, Method::HEAD, "/v1/orders/7"),
            Some(0),
            "HEAD takes GET"
        );
        assert!(matches!(
            table.find(&Method::POST, "/v1/orders/7"),
            Found::WrongMethod(_)
        ));
    }
}
