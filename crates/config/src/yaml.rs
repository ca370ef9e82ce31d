//! YAML source → position-annotated node tree.
//!
//! We deliberately do not deserialize `prometheus.yml` through serde derive:
//! Prometheus inlines the HTTP client fields into several structs (serde's
//! `flatten` would break strict unknown-field checks and lose locations), and
//! we want *every* error (unknown field, bad type, bad value) reported with
//! its field path, all at once. So the event stream of serde-saphyr's parser
//! (`granit_parser`) is turned into a small tree of [`Node`]s that keep the
//! raw scalar text, its quoting and its position; `decode` walks that tree.
//!
//! YAML features handled here: anchors/aliases (expanded by copy with a
//! global budget against "billion laughs"), merge keys `<<` (explicit keys
//! win), duplicate keys (an error, as with go-yaml's strict mode) and a
//! nesting-depth limit. Only the first document of a stream is used, like
//! go-yaml's `Unmarshal`.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use crate::error::Position;

/// Maximum nesting of collections; deeper input is rejected instead of
/// risking stack exhaustion in the recursive builder and decoder.
const MAX_DEPTH: usize = 64;
/// Maximum number of nodes copied through alias expansion.
const MAX_ALIAS_NODES: usize = 1_000_000;

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    /// Raw scalar text and whether it was written plain (unquoted, so it is
    /// subject to YAML type resolution: bools, ints, null).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Position,
    pub value: Node,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Position,
}

impl Node {
    pub(crate) fn null(pos: Position) -> Node {
        Node {
            value: Value::Null,
            pos,
        }
    }

    fn size(&self) -> usize {
        match &self.value {
            Value::Null | Value::Scalar { .. } => 1,
            Value::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Value::Map(entries) => 1 + entries.iter().map(|e| e.value.size()).sum::<usize>(),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
}

/// A syntax-level failure: parsing stops here.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub pos: Position,
    pub message: String,
}

fn position(span: &Span) -> Position {
    Position {
        line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
        column: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
    }
}

fn scan_error(e: &ScanError) -> SyntaxError {
    SyntaxError {
        pos: Position {
            line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
            column: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
        },
        message: e.info().to_string(),
    }
}

/// Parses the first YAML document of `text`. An empty document yields a
/// `Null` root.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        alias_budget: MAX_ALIAS_NODES,
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    alias_budget: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(scan_error(&e)),
            None => Err(SyntaxError {
                pos: Position::default(),
                message: "unexpected end of YAML stream".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Node, SyntaxError> {
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart => {}
                Event::StreamEnd => return Ok(Node::null(Position::default())),
                Event::DocumentStart(..) => {
                    let (ev, span) = loop {
                        let (ev, span) = self.next()?;
                        if ev.is_node() || matches!(ev, Event::DocumentEnd) {
                            break (ev, span);
                        }
                    };
                    if matches!(ev, Event::DocumentEnd) {
                        return Ok(Node::null(position(&span)));
                    }
                    return self.node(ev, span, 0);
                }
                ev if ev.is_node() => {
                    return Err(SyntaxError {
                        pos: position(&span),
                        message: "unexpected YAML event before document".into(),
                    })
                }
                // Comments and other non-node events before the document.
                _ => {}
            }
        }
    }

    /// Reads the next event that starts a node (skipping comments).
    fn next_node_event(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        loop {
            let (ev, span) = self.next()?;
            if ev.is_node() || matches!(ev, Event::SequenceEnd | Event::MappingEnd) {
                return Ok((ev, span));
            }
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        let pos = position(&span);
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("YAML nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_str = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                let plain = matches!(style, ScalarStyle::Plain) && !forced_str;
                let value = if plain && is_null_literal(&text) {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                (Node { value, pos }, anchor)
            }
            Event::Alias(id) => return self.alias(id, pos),
            Event::SequenceStart(_, anchor, _) => (self.sequence(pos, depth)?, anchor),
            Event::MappingStart(_, anchor, _) => (self.mapping(pos, depth)?, anchor),
            _ => {
                return Err(SyntaxError {
                    pos,
                    message: "unexpected YAML event".into(),
                })
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn alias(&mut self, id: usize, pos: Position) -> Result<Node, SyntaxError> {
        let Some(target) = self.anchors.get(&id) else {
            return Err(SyntaxError {
                pos,
                message: "unknown YAML alias".into(),
            });
        };
        let size = target.size();
        if size > self.alias_budget {
            return Err(SyntaxError {
                pos,
                message: "YAML alias expansion exceeds the document budget".into(),
            });
        }
        self.alias_budget -= size;
        let mut copy = target.clone();
        copy.pos = pos;
        Ok(copy)
    }

    fn sequence(&mut self, pos: Position, depth: usize) -> Result<Node, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let (ev, span) = self.next_node_event()?;
            if matches!(ev, Event::SequenceEnd) {
                break;
            }
            items.push(self.node(ev, span, depth + 1)?);
        }
        Ok(Node {
            value: Value::Seq(items),
            pos,
        })
    }

    fn mapping(&mut self, pos: Position, depth: usize) -> Result<Node, SyntaxError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merged: Vec<Entry> = Vec::new();
        loop {
            let (ev, span) = self.next_node_event()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key_node = self.node(ev, span, depth + 1)?;
            let (value_ev, value_span) = self.next_node_event()?;
            let value = self.node(value_ev, value_span, depth + 1)?;
            let key = match key_node.value {
                Value::Scalar { text, plain } => {
                    if plain && text == "<<" {
                        collect_merge(value, &mut merged)?;
                        continue;
                    }
                    text
                }
                Value::Null => String::new(),
                _ => {
                    return Err(SyntaxError {
                        pos: key_node.pos,
                        message: "mapping keys must be scalars".into(),
                    })
                }
            };
            if let Some(prev) = entries.iter().find(|e| e.key == key) {
                return Err(SyntaxError {
                    pos: key_node.pos,
                    message: format!(
                        "key {key:?} already set in map (first set at line {})",
                        prev.key_pos.line
                    ),
                });
            }
            entries.push(Entry {
                key,
                key_pos: key_node.pos,
                value,
            });
        }
        for m in merged {
            if !entries.iter().any(|e| e.key == m.key) {
                entries.push(m);
            }
        }
        Ok(Node {
            value: Value::Map(entries),
            pos,
        })
    }
}

/// Merge-key values: a mapping, or a sequence of mappings where earlier
/// mappings take precedence.
fn collect_merge(value: Node, merged: &mut Vec<Entry>) -> Result<(), SyntaxError> {
    match value.value {
        Value::Map(entries) => {
            for e in entries {
                if !merged.iter().any(|m| m.key == e.key) {
                    merged.push(e);
                }
            }
            Ok(())
        }
        Value::Seq(items) => {
            for item in items {
                if !matches!(item.value, Value::Map(_)) {
                    return Err(merge_error(item.pos));
                }
                collect_merge(item, merged)?;
            }
            Ok(())
        }
        _ => Err(merge_error(value.pos)),
    }
}

fn merge_error(pos: Position) -> SyntaxError {
    SyntaxError {
        pos,
        message: "map merge requires map or sequence of maps as the value".into(),
    }
}

fn is_null_literal(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map_keys(node: &Node) -> Vec<String> {
        match &node.value {
            Value::Map(entries) => entries.iter().map(|e| e.key.clone()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nb:\n  c: x\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].key, "b");
        assert_eq!(entries[1].key_pos, Position { line: 2, column: 1 });
        assert_eq!(entries[1].value.pos, Position { line: 3, column: 3 });
    }

    #[test]
    fn duplicate_keys_rejected() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("already set"), "{}", err.message);
    }

    #[test]
    fn merge_keys_and_aliases() {
        let root = parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert_eq!(map_keys(&entries[1].value), vec!["y", "x"]);
    }

    #[test]
    fn quoted_scalars_are_not_null() {
        let root = parse("a: ''\nb: ~\nc: 'null'\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        assert!(matches!(entries[0].value.value, Value::Scalar { .. }));
        assert!(entries[1].value.is_null());
        assert!(matches!(
            entries[2].value.value,
            Value::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&doc).unwrap_err();
        assert!(err.message.contains("budget"), "{}", err.message);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
    }
}
