//! A YAML document as a tree whose every node remembers its line and column.
//!
//! `serde_yaml` reports only the first error and loses positions after parsing, but `check`
//! must list *every* problem with `file:line:col`. So the text is parsed once into this
//! positioned tree (from `yaml-rust2`'s marked event stream) and the schema decoder walks it.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// The earlier of two positions.
    fn min_by_line(self, other: Pos) -> Pos {
        if (self.line, self.col) <= (other.line, other.col) {
            self
        } else {
            other
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One YAML node.
#[derive(Debug, Clone)]
pub enum Node {
    /// A scalar (quoted `"null"` stays a string; plain `null` becomes [`Node::Null`]).
    Scalar {
        value: String,
        pos: Pos,
        /// Written without quotes: `2` and `true` may be typed literals, `"2"` is a string.
        plain: bool,
    },
    /// `~`, `null` or an empty value.
    Null {
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    /// Entries keep their file order (and duplicates, which the decoder reports).
    Map {
        entries: Vec<(Node, Node)>,
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Null { pos } | Node::Seq { pos, .. } | Node::Map { pos, .. } => {
                *pos
            }
        }
    }

    /// What kind of node this is, in words, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a scalar",
            Node::Null { .. } => "nothing (null)",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// The most nodes a document may hold, aliases expanded (a 20,000-route file has about
/// 250,000). Beyond it the document is refused: a few hundred bytes of nested aliases
/// ("billion laughs") would otherwise expand to billions of nodes and exhaust memory in
/// `check`, at start-up, or in a running gateway on reload.
pub const MAX_NODES: usize = 1_000_000;
/// The most nodes that alias expansion may add (shared snippets are small).
pub const MAX_EXPANDED: usize = 100_000;
/// The most text that alias expansion may add: one large anchored value repeated would
/// otherwise expand a small file to gigabytes.
pub const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;
/// The deepest nesting of lists and mappings (the schema needs fewer than 10 levels).
pub const MAX_DEPTH: usize = 64;

/// A syntax error (or a document over the size bounds) with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// yaml-rust2's messages describe its parser's state ("while parsing a block mapping, did not
/// find expected key"); an operator needs what is wrong with the file. The parser's wording
/// follows in parentheses.
fn explain(raw: &str) -> String {
    const PLAIN: &[(&str, &str)] = &[
        (
            "did not find expected key",
            "this line is not indented like the keys around it; keys of one mapping line up \
             exactly, and a deeper key needs a parent key ending in `:` above it",
        ),
        (
            "did not find expected '-' indicator",
            "this line is indented like a list item but does not start with `- `; line it up \
             with the key above it, or make it an item",
        ),
        ("tabs disallowed", "tabs cannot indent YAML; use spaces"),
        (
            "mapping values are not allowed",
            "a `key: value` cannot start here: quote a value that contains `: `, or fix the \
             indentation of this line",
        ),
        (
            "did not find expected ',' or ']'",
            "a `[ … ]` list is not closed, or two of its items lack a comma between them",
        ),
        (
            "did not find expected ',' or '}'",
            "a `{ … }` mapping is not closed, or two of its entries lack a comma between them",
        ),
        (
            "cannot start any token",
            "a value starts with a character YAML reserves (such as `@`, `` ` `` or `%`): quote the value",
        ),
        (
            "unknown escape character",
            "a double-quoted value has an unknown `\\` escape: use single quotes",
        ),
        (
            "unexpected end of stream",
            "the file ends inside a quoted value or an open `[`/`{`",
        ),
        (
            "did not find expected node content",
            "a value is missing here, or starts with a character YAML does not expect",
        ),
        (
            "block sequence entries are not allowed",
            "a `- ` list item cannot start here: put it on its own line, indented under its key",
        ),
    ];
    match PLAIN.iter().find(|(marker, _)| raw.contains(marker)) {
        Some((_, plain)) => format!("YAML syntax error: {plain} (parser: {raw})"),
        None => format!("YAML syntax error: {raw}"),
    }
}

/// Parse `text` into a positioned tree. An empty document yields `Node::Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        pos: Pos::from(*e.marker()),
        message: explain(e.info()),
    })?;
    if let Some(message) = builder.error {
        return Err(SyntaxError {
            pos: builder.error_pos,
            message,
        });
    }
    Ok(builder.root.unwrap_or(Node::Null {
        pos: Pos { line: 1, col: 1 },
    }))
}

/// How much a node holds: nodes, and bytes of scalar text.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

/// A container being built: its start position, anchor, the document's size when it
/// started, and its children so far.
enum Open {
    Seq(Pos, usize, Size, Vec<Node>),
    Map(Pos, usize, Size, Vec<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Anchored nodes with what each holds.
    anchors: HashMap<usize, (Node, Size)>,
    root: Option<Node>,
    error: Option<String>,
    error_pos: Pos,
    /// The document so far, aliases expanded, and how much of it alias expansion added.
    size: Size,
    expanded: Size,
}

impl Builder {
    /// `size`: what `node` holds (for an anchor's later aliases).
    fn push_value(&mut self, node: Node, anchor: usize, size: Size) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            Some(Open::Seq(_, _, _, items)) | Some(Open::Map(_, _, _, items)) => items.push(node),
            None => self.root = Some(node),
        }
    }

    /// What the document gained since `start` (a container's size, itself included).
    fn since(&self, start: Size) -> Size {
        Size {
            nodes: self.size.nodes - start.nodes + 1,
            bytes: self.size.bytes - start.bytes,
        }
    }

    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
            self.error_pos = pos;
        }
    }

    /// Count `more`; `false` (and the error) once the document is too large.
    fn count(&mut self, more: Size, pos: Pos) -> bool {
        self.size.nodes = self.size.nodes.saturating_add(more.nodes);
        self.size.bytes = self.size.bytes.saturating_add(more.bytes);
        if self.size.nodes > MAX_NODES {
            self.fail(
                pos,
                format!("the document holds more than {MAX_NODES} values (aliases expanded); refusing it"),
            );
        }
        self.error.is_none()
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        // Past an error nothing more is kept: the parser still reports the rest of the
        // document, but it must not grow the tree.
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let size = Size {
                    nodes: 1,
                    bytes: value.len(),
                };
                if !self.count(size, pos) {
                    return;
                }
                let plain = style == TScalarStyle::Plain;
                let node = if plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Node::Null { pos }
                } else {
                    Node::Scalar { value, pos, plain }
                };
                self.push_value(node, anchor, size);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(
                        pos,
                        format!("lists and mappings are nested more than {MAX_DEPTH} deep"),
                    );
                    return;
                }
                if !self.count(Size { nodes: 1, bytes: 0 }, pos) {
                    return;
                }
                let start = self.size;
                self.stack.push(match ev {
                    Event::SequenceStart(..) => Open::Seq(pos, anchor, start, Vec::new()),
                    _ => Open::Map(pos, anchor, start, Vec::new()),
                });
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(pos, anchor, start, items)) = self.stack.pop() {
                    let size = self.since(start);
                    self.push_value(Node::Seq { items, pos }, anchor, size);
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(pos, anchor, start, flat)) = self.stack.pop() {
                    let size = self.since(start);
                    let mut entries = Vec::with_capacity(flat.len() / 2);
                    let mut it = flat.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    // yaml-rust2 marks a block mapping after its first key; the first key is
                    // where a reader looks for "this mapping".
                    let pos = entries.first().map_or(pos, |(k, _)| k.pos().min_by_line(pos));
                    self.push_value(Node::Map { entries, pos }, anchor, size);
                }
            }
            Event::Alias(id) => {
                let Some(size) = self.anchors.get(&id).map(|(_, size)| *size) else {
                    self.fail(pos, "YAML syntax error: alias names an unknown anchor".into());
                    return;
                };
                self.expanded.nodes = self.expanded.nodes.saturating_add(size.nodes);
                self.expanded.bytes = self.expanded.bytes.saturating_add(size.bytes);
                if self.expanded.nodes > MAX_EXPANDED {
                    self.fail(
                        pos,
                        format!("aliases expand to more than {MAX_EXPANDED} values; refusing the document"),
                    );
                    return;
                }
                if self.expanded.bytes > MAX_EXPANDED_BYTES {
                    self.fail(
                        pos,
                        format!(
                            "aliases expand to more than {} MiB of text; refusing the document",
                            MAX_EXPANDED_BYTES >> 20
                        ),
                    );
                    return;
                }
                if !self.count(size, pos) {
                    return;
                }
                if let Some((node, _)) = self.anchors.get(&id) {
                    let node = node.clone();
                    self.push_value(node, 0, size);
                }
            }
            Event::DocumentStart if self.root.is_some() => {
                self.fail(
                    pos,
                    "YAML syntax error: only one YAML document is allowed in the configuration file".into(),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  - x\n").unwrap();
        let Node::Map { entries, .. } = n else { panic!() };
        assert_eq!(entries[0].0.pos(), Pos { line: 1, col: 1 });
        assert_eq!(entries[1].1.pos().line, 3);
        let Node::Seq { items, .. } = &entries[1].1 else {
            panic!()
        };
        assert_eq!(items[0].pos(), Pos { line: 3, col: 5 });
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
    }

    #[test]
    fn aliases_resolve() {
        let n = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        let Node::Map { entries, .. } = n else { panic!() };
        assert!(matches!(entries[1].1, Node::Map { .. }));
    }

    /// "Billion laughs": 9 levels of 9 aliases each would be 387 million nodes.
    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("aliases expand to more than"), "{e:?}");
        let deep = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e:?}");
        let big = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(700_000),
            vec!["*a"; 30].join(", ")
        );
        let e = parse(&big).unwrap_err();
        assert!(e.message.contains("MiB of text"), "{e:?}");
        let shared = "x: &x {k: 1, j: [1, 2]}\na: *x\nb: *x\n";
        assert!(parse(shared).is_ok(), "ordinary aliases still work");
    }

    #[test]
    fn quoted_null_is_a_string() {
        let n = parse("a: \"null\"\nb: null\n").unwrap();
        let Node::Map { entries, .. } = n else { panic!() };
        assert!(matches!(entries[0].1, Node::Scalar { .. }));
        assert!(matches!(entries[1].1, Node::Null { .. }));
    }
}
