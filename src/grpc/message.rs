//! Messages across the transcoding edge: a request message built from the JSON body, the
//! path variables and the query (proto3 JSON mapping, unknown fields refused); gRPC's
//! length-prefixed framing both ways; a response message printed as JSON.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use serde_json::{Map, Value};

/// How the body of the HTTP request maps onto the message (`HttpRule.body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyField {
    /// No body.
    None,
    /// `*`: the whole message.
    Whole,
    /// One field (its proto name).
    Field(String),
}

/// Why a request message could not be built: the client's mistake (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// Parse a JSON body into a document prost-reflect reads: numbers normalized (the gateway's
/// serde_json keeps arbitrary precision, whose numbers prost-reflect cannot read as they are).
pub fn document(body: &[u8]) -> Result<Value, Invalid> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid(format!("the request body is not valid JSON: {e}")))?;
    normalize_numbers(&mut value);
    Ok(value)
}

fn normalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_none() => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// The request message: the body placed by `body`, then query parameters (not with `*`), then
/// the path variables, which win. `query` is percent-decoded pairs.
pub fn build(
    input: &MessageDescriptor,
    body: &BodyField,
    json: Option<Value>,
    path: &[(String, String)],
    query: &[(String, String)],
) -> Result<DynamicMessage, Invalid> {
    let mut doc = Map::new();
    match (body, json) {
        (BodyField::Whole, Some(Value::Object(map))) => doc = map,
        (BodyField::Whole, Some(_)) => return Err(Invalid("the request body must be a JSON object".into())),
        (BodyField::Field(name), Some(value)) => {
            let field = input
                .get_field_by_name(name)
                .ok_or_else(|| Invalid(format!("the body field `{name}` is not in {}", input.full_name())))?;
            doc.insert(field.name().to_string(), value);
        }
        (_, _) => {}
    }
    let bound: Vec<&str> = path.iter().map(|(f, _)| f.as_str()).collect();
    if *body != BodyField::Whole {
        for (name, value) in query {
            let fields = resolve(input, name)?;
            let proto_path = proto_path(&fields);
            if bound.iter().any(|b| *b == proto_path) {
                return Err(Invalid(format!(
                    "`{name}` is bound by the path; it cannot also be a query parameter"
                )));
            }
            if let BodyField::Field(b) = body {
                if fields.first().is_some_and(|f| f.name() == b) {
                    return Err(Invalid(format!(
                        "`{name}` is in the body; it cannot also be a query parameter"
                    )));
                }
            }
            set(&mut doc, &fields, value, true)?;
        }
    }
    for (name, value) in path {
        let fields = resolve(input, name)?;
        set(&mut doc, &fields, value, false)?;
    }
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(input.clone(), Value::Object(doc), &options)
        .map_err(|e| Invalid(format!("the request does not fit {}: {e}", input.full_name())))
}

/// Whether `dotted` names a field of `input` (proto or JSON names): a query parameter that
/// does not is unknown.
pub fn resolves(input: &MessageDescriptor, dotted: &str) -> bool {
    resolve(input, dotted).is_ok()
}

/// The fields along a dotted path (`shelf.name`, proto or JSON names).
fn resolve(input: &MessageDescriptor, dotted: &str) -> Result<Vec<FieldDescriptor>, Invalid> {
    let mut out = Vec::new();
    let mut message = input.clone();
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = message
            .get_field_by_name(part)
            .or_else(|| message.get_field_by_json_name(part))
            .ok_or_else(|| Invalid(format!("unknown parameter `{dotted}`")))?;
        let last = i + 1 == parts.len();
        if !last {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => message = m,
                _ => return Err(Invalid(format!("`{dotted}`: `{part}` has no fields"))),
            }
        }
        out.push(field);
    }
    Ok(out)
}

fn proto_path(fields: &[FieldDescriptor]) -> String {
    fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(".")
}

/// Set one text value (a path variable or a query parameter) at `fields`, converted to the
/// field's JSON form. A repeated field collects; a second value for a singular one is refused
/// when it comes from the query (a path variable overrides the body).
fn set(
    doc: &mut Map<String, Value>,
    fields: &[FieldDescriptor],
    text: &str,
    from_query: bool,
) -> Result<(), Invalid> {
    let Some((last, parents)) = fields.split_last() else {
        return Ok(());
    };
    let mut map = doc;
    for f in parents {
        // The body may spell the parent by its JSON name: set inside that object, not beside
        // it (a second key for the same field would replace it whole).
        let key = present_key(map, f).unwrap_or_else(|| f.name().to_string());
        let entry = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        map = match entry {
            Value::Object(m) => m,
            _ => return Err(Invalid(format!("`{}` is not an object", f.name()))),
        };
    }
    let value = typed(last, text)?;
    let name = present_key(map, last).unwrap_or_else(|| last.name().to_string());
    if last.is_map() {
        return Err(Invalid(format!(
            "`{name}` is a map; it cannot be set from the path or the query"
        )));
    }
    if last.is_list() {
        match map.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items.push(value),
            _ => return Err(Invalid(format!("`{}` is not a list", last.name()))),
        }
        return Ok(());
    }
    if from_query && map.contains_key(&name) {
        return Err(Invalid(format!("`{}` is given more than once", last.name())));
    }
    map.insert(name, value);
    Ok(())
}

/// The key `field` already has in `map`: its proto name or its JSON name.
fn present_key(map: &Map<String, Value>, field: &FieldDescriptor) -> Option<String> {
    [field.name(), field.json_name()]
        .into_iter()
        .find(|k| map.contains_key(*k))
        .map(str::to_string)
}

/// A text value as the JSON the field's type reads.
fn typed(field: &FieldDescriptor, text: &str) -> Result<Value, Invalid> {
    let bad = |what: &str| Invalid(format!("`{}` must be {what}, not `{text}`", field.name()));
    Ok(match field.kind() {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::from(text.parse::<i32>().map_err(|_| bad("a 32-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::from(
            text.parse::<u32>()
                .map_err(|_| bad("an unsigned 32-bit integer"))?,
        ),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            text.parse::<i64>().map_err(|_| bad("a 64-bit integer"))?;
            Value::String(text.to_string())
        }
        Kind::Uint64 | Kind::Fixed64 => {
            text.parse::<u64>()
                .map_err(|_| bad("an unsigned 64-bit integer"))?;
            Value::String(text.to_string())
        }
        Kind::Float | Kind::Double => match text {
            "NaN" | "Infinity" | "-Infinity" => Value::String(text.to_string()),
            _ => {
                let f: f64 = text.parse().map_err(|_| bad("a number"))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| bad("a number"))?
            }
        },
        Kind::Enum(e) => match text.parse::<i32>() {
            Ok(n) => Value::from(n),
            Err(_) if e.get_value_by_name(text).is_some() => Value::String(text.to_string()),
            Err(_) => return Err(bad(&format!("a value of {}", e.full_name()))),
        },
        Kind::String | Kind::Bytes => Value::String(text.to_string()),
        // A wrapper (`google.protobuf.BoolValue`…) is its value in JSON.
        Kind::Message(m) if is_wrapper(&m) => match m.get_field_by_name("value") {
            Some(inner) => typed(&inner, text)?,
            None => Value::String(text.to_string()),
        },
        // The other well-known types with a string form (Timestamp, Duration, FieldMask): the
        // JSON mapping reads them from the string.
        Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => Value::String(text.to_string()),
        Kind::Message(m) => {
            return Err(Invalid(format!(
                "`{}` is a message ({}); name one of its fields",
                field.name(),
                m.full_name()
            )))
        }
    })
}

fn is_wrapper(m: &MessageDescriptor) -> bool {
    m.full_name()
        .strip_prefix("google.protobuf.")
        .is_some_and(|n| n.ends_with("Value") && !matches!(n, "Value" | "ListValue"))
}

/// Frame a message for the wire: uncompressed flag, big-endian length, bytes.
pub fn frame(message: &DynamicMessage) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // Encoding into a buffer with enough room cannot fail.
    let _ = message.encode(&mut out);
    out.freeze()
}

/// Why the response's frames cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A message over the route's `max_response_body`.
    TooLarge,
    /// A compressed message (the gateway asks for none).
    Compressed,
    /// The body ended inside a frame.
    Truncated,
}

/// Reassembles length-prefixed messages from body chunks of any size.
pub struct Deframer {
    buf: BytesMut,
    max: usize,
    /// Bytes of messages taken so far (all messages together are bounded by `max` too).
    total: usize,
}

impl Deframer {
    pub fn new(max: usize) -> Deframer {
        Deframer {
            buf: BytesMut::new(),
            max,
            total: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(FrameError::Compressed);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max || self.total + len > self.max {
            return Err(FrameError::TooLarge);
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        self.total += len;
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// At the end of the body: nothing may be left over.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// How responses print (`print:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Print {
    pub proto_field_names: bool,
    pub enums_as_ints: bool,
    pub emit_defaults: bool,
}

impl Print {
    fn options(&self, emit_defaults: bool) -> SerializeOptions {
        SerializeOptions::new()
            .use_proto_field_name(self.proto_field_names)
            .use_enum_numbers(self.enums_as_ints)
            .skip_default_fields(!emit_defaults)
            .stringify_64_bit_integers(true)
    }
}

/// Decode a response message and print it as JSON: the whole message, or the field named by
/// `response_body`.
pub fn print(
    output: &MessageDescriptor,
    bytes: &[u8],
    response_body: Option<&str>,
    print: Print,
) -> Result<Vec<u8>, String> {
    let message = DynamicMessage::decode(output.clone(), bytes)
        .map_err(|e| format!("undecodable {}: {e}", output.full_name()))?;
    print_message(&message, response_body, print)
}

/// Print a decoded message (see [`print`]).
pub fn print_message(
    message: &DynamicMessage,
    response_body: Option<&str>,
    print: Print,
) -> Result<Vec<u8>, String> {
    let Some(field) = response_body else {
        let mut out = serde_json::Serializer::new(Vec::new());
        message
            .serialize_with_options(&mut out, &print.options(print.emit_defaults))
            .map_err(|e| format!("printing {}: {e}", message.descriptor().full_name()))?;
        return Ok(out.into_inner());
    };
    // One field, printed with the route's options; always there (an empty list is `[]`, not
    // nothing).
    let desc = message.descriptor();
    let field = desc
        .get_field_by_name(field)
        .ok_or_else(|| format!("response_body `{field}` is not in {}", desc.full_name()))?;
    let value = message.get_field(&field);
    let options = print.options(print.emit_defaults);
    let mut out = serde_json::Serializer::new(Vec::new());
    let failed = |e: serde_json::Error| format!("printing {}: {e}", desc.full_name());
    match value.as_ref() {
        // A message, or a list of them (the common `response_body: items`): printed straight
        // to bytes, element by element, never as a JSON tree in memory.
        prost_reflect::Value::Message(m) => m.serialize_with_options(&mut out, &options).map_err(failed)?,
        prost_reflect::Value::List(items) if items.iter().all(|i| i.as_message().is_some()) => {
            let mut bytes = vec![b'['];
            for (i, item) in items.iter().filter_map(|i| i.as_message()).enumerate() {
                if i > 0 {
                    bytes.push(b',');
                }
                let mut one = serde_json::Serializer::new(Vec::new());
                item.serialize_with_options(&mut one, &options).map_err(failed)?;
                bytes.extend_from_slice(&one.into_inner());
            }
            bytes.push(b']');
            return Ok(bytes);
        }
        // A scalar, a list of scalars or a map: printed inside a message holding only it,
        // defaults included (so the field is there), and taken out.
        _ => {
            let mut only = DynamicMessage::new(desc.clone());
            only.set_field(&field, value.into_owned());
            let whole = serde_json::to_value(SerializeWith(&only, print.options(true))).map_err(failed)?;
            let key = if print.proto_field_names {
                field.name()
            } else {
                field.json_name()
            };
            let one = whole.get(key).cloned().unwrap_or(Value::Null);
            return serde_json::to_vec(&one).map_err(|e| e.to_string());
        }
    }
    Ok(out.into_inner())
}

struct SerializeWith<'a>(&'a DynamicMessage, SerializeOptions);

impl serde::Serialize for SerializeWith<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with_options(s, &self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    const PROTO: &str = r#"
        syntax = "proto3";
        package t;
        import "google/protobuf/wrappers.proto";
        enum Color { COLOR_UNSPECIFIED = 0; RED = 1; BLUE = 2; }
        message Inner { string name = 1; int32 n = 2; }
        message Req {
          int64 id = 1;
          string title = 2;
          repeated int32 tags = 3;
          Color color = 4;
          Inner inner = 5;
          bool flag = 6;
          double ratio = 7;
          google.protobuf.BoolValue active = 8;
          Inner inner_info = 9;
        }
    "#;

    fn desc() -> MessageDescriptor {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("t.proto"), PROTO).expect("write");
        let pool: DescriptorPool =
            super::super::descriptors::compile(&["t.proto".into()], &[], dir.path()).expect("compiles");
        pool.get_message_by_name("t.Req").expect("t.Req")
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn body_query_and_path_bind_typed_values() {
        let d = desc();
        let body = document(br#"{"title": "t", "ratio": 1.50}"#).expect("json");
        let m = build(
            &d,
            &BodyField::Whole,
            Some(body),
            &q(&[("id", "9007199254740993")]),
            &[],
        )
        .expect("builds");
        let out = print_message(&m, None, Print::default()).expect("prints");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"id":"9007199254740993","title":"t","ratio":1.5}"#
        );
        let m = build(
            &d,
            &BodyField::None,
            None,
            &q(&[("inner.name", "x")]),
            &q(&[
                ("tags", "1"),
                ("tags", "2"),
                ("color", "BLUE"),
                ("flag", "true"),
                ("inner.n", "3"),
            ]),
        )
        .expect("builds");
        let out = print_message(
            &m,
            None,
            Print {
                enums_as_ints: true,
                ..Print::default()
            },
        )
        .expect("prints");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"tags":[1,2],"color":2,"inner":{"name":"x","n":3},"flag":true}"#
        );
    }

    #[test]
    fn wrappers_and_json_named_parents_take_path_values() {
        let d = desc();
        let m = build(&d, &BodyField::None, None, &[], &q(&[("active", "false")])).expect("builds");
        let out = print_message(&m, None, Print::default()).expect("prints");
        assert_eq!(String::from_utf8(out).expect("utf8"), r#"{"active":false}"#);
        // The body spells the parent `innerInfo`; the path sets `inner_info.name` inside it.
        let body = document(br#"{"innerInfo": {"n": 5}}"#).expect("json");
        let m = build(
            &d,
            &BodyField::Whole,
            Some(body),
            &q(&[("inner_info.name", "x")]),
            &[],
        )
        .expect("builds");
        let out = print_message(&m, None, Print::default()).expect("prints");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"innerInfo":{"name":"x","n":5}}"#
        );
        let out = print_message(&m, Some("inner_info"), Print::default()).expect("prints");
        assert_eq!(String::from_utf8(out).expect("utf8"), r#"{"name":"x","n":5}"#);
        let out = print_message(&m, Some("tags"), Print::default()).expect("prints");
        assert_eq!(String::from_utf8(out).expect("utf8"), "[]");
    }

    #[test]
    fn mistakes_are_refused() {
        let d = desc();
        let unknown = document(br#"{"nope": 1}"#).expect("json");
        assert!(build(&d, &BodyField::Whole, Some(unknown), &[], &[]).is_err());
        for (k, v) in [
            ("nope", "1"),
            ("tags", "x"),
            ("flag", "yes"),
            ("color", "GREEN"),
            ("inner", "x"),
            ("id", "1.5"),
        ] {
            assert!(
                build(&d, &BodyField::None, None, &[], &q(&[(k, v)])).is_err(),
                "{k}={v}"
            );
        }
        assert!(
            build(&d, &BodyField::None, None, &q(&[("id", "1")]), &q(&[("id", "2")])).is_err(),
            "a path-bound field from the query"
        );
        assert!(build(
            &d,
            &BodyField::None,
            None,
            &[],
            &q(&[("title", "a"), ("title", "b")])
        )
        .is_err());
    }

    #[test]
    fn frames_round_trip_across_chunks() {
        let d = desc();
        let m = build(&d, &BodyField::None, None, &[], &q(&[("title", "hello")])).expect("builds");
        let framed = frame(&m);
        let mut two = framed.to_vec();
        two.extend_from_slice(&framed);
        let mut de = Deframer::new(1024);
        let mut got = Vec::new();
        for chunk in two.chunks(3) {
            de.push(chunk);
            while let Some(msg) = de.next_message().expect("frames") {
                got.push(msg);
            }
        }
        assert_eq!(got.len(), 2);
        assert!(de.finish().is_ok());
        let mut small = Deframer::new(4);
        small.push(&framed);
        assert_eq!(small.next_message(), Err(FrameError::TooLarge));
        let mut cut = Deframer::new(1024);
        cut.push(&framed[..framed.len() - 1]);
        assert_eq!(cut.next_message(), Ok(None));
        assert_eq!(cut.finish(), Err(FrameError::Truncated));
    }
}
