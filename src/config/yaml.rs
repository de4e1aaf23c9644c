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

/// A syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parse `text` into a positioned tree. An empty document yields `Node::Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        pos: Pos::from(*e.marker()),
        message: e.info().to_string(),
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

/// A container being built: its start position, anchor and children so far.
enum Open {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<String>,
    error_pos: Pos,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some(Open::Seq(_, _, items)) | Some(Open::Map(_, _, items)) => items.push(node),
            None => self.root = Some(node),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let node = if plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Node::Null { pos }
                } else {
                    Node::Scalar { value, pos }
                };
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(pos, anchor, Vec::new())),
            Event::SequenceEnd => {
                if let Some(Open::Seq(pos, anchor, items)) = self.stack.pop() {
                    self.push_value(Node::Seq { items, pos }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(pos, anchor, flat)) = self.stack.pop() {
                    let mut entries = Vec::with_capacity(flat.len() / 2);
                    let mut it = flat.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    // yaml-rust2 marks a block mapping after its first key; the first key is
                    // where a reader looks for "this mapping".
                    let pos = entries.first().map_or(pos, |(k, _)| k.pos().min_by_line(pos));
                    self.push_value(Node::Map { entries, pos }, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_value(node, 0),
                None => {
                    if self.error.is_none() {
                        self.error = Some("alias names an unknown anchor".into());
                        self.error_pos = pos;
                    }
                    self.push_value(Node::Null { pos }, 0);
                }
            },
            Event::DocumentStart if self.root.is_some() && self.error.is_none() => {
                self.error = Some("only one YAML document is allowed in the configuration file".into());
                self.error_pos = pos;
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

    #[test]
    fn quoted_null_is_a_string() {
        let n = parse("a: \"null\"\nb: null\n").unwrap();
        let Node::Map { entries, .. } = n else { panic!() };
        assert!(matches!(entries[0].1, Node::Scalar { .. }));
        assert!(matches!(entries[1].1, Node::Null { .. }));
    }
}
