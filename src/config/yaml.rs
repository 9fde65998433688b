//! YAML parsing with positions: the document becomes a `serde_json::Value`
//! plus a map from each field's path (`checks[2].timeout`) to the line and
//! column where it was written. Deserializing from the value with
//! `serde_path_to_error` then gives every error a path, and the map turns
//! the path into a position, even inside tagged enums where YAML libraries
//! lose track of positions.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A parsed document: the value, and where each path was written.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

/// The parser's budget for a file of `len` bytes. Without aliases every
/// node and event takes at least one byte of text, so node and event limits
/// of one per byte (and never below the library's defaults) cannot refuse an
/// honest file, however many checks it holds; what they still stop is
/// expansion through aliases (an alias bomb), together with the library's
/// alias, anchor and depth limits, which stay at their defaults.
fn budget_for(len: usize) -> Option<serde_saphyr::Budget> {
    let defaults = serde_saphyr::Budget::default();
    #[allow(deprecated)] // Reading the defaults; the macro does the writing.
    let (nodes, events) = (defaults.max_nodes, defaults.max_events);
    serde_saphyr::budget! {
        max_nodes: nodes.max(len),
        max_events: events.max(len.saturating_mul(2)),
    }
}

impl Document {
    /// Parse YAML text (YAML 1.2 scalars). The error is a position and a
    /// message.
    pub fn parse(text: &str) -> Result<Self, (Pos, String)> {
        // YAML 1.2 booleans only: `name: y` or `country: no` stay strings.
        let options = serde_saphyr::options! {
            strict_booleans: true,
            budget: budget_for(text.len()),
        };
        let root: Spanned<Node> =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| {
                let pos = e.location().map(|l| pos(&l)).unwrap_or_default();
                (pos, syntax_message(&e.without_snippet().to_string()))
            })?;
        let mut doc = Document {
            value: Value::Null,
            values: HashMap::new(),
            keys: HashMap::new(),
        };
        doc.value = doc.convert(root, String::new());
        Ok(doc)
    }

    fn convert(&mut self, node: Spanned<Node>, path: String) -> Value {
        self.values.insert(path.clone(), pos(&node.referenced));
        match node.value {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::from(i),
            Node::UInt(u) => Value::from(u),
            Node::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.convert(item, format!("{path}[{i}]")))
                    .collect(),
            ),
            Node::Map(entries) => {
                let mut map = Map::new();
                for (key, value) in entries {
                    let child = join(&path, &key.value);
                    self.keys.insert(child.clone(), pos(&key.referenced));
                    let v = self.convert(value, child);
                    map.insert(key.value, v);
                }
                Value::Object(map)
            }
        }
    }

    /// Where the value at `path` was written; falls back to the nearest
    /// ancestor that has a position.
    pub fn position(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.values.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None if !p.is_empty() => p.clear(),
                None => return Pos::default(),
            }
        }
    }

    /// Where the key of `path` was written (for unknown-field errors).
    pub fn key_position(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied()
    }
}

/// Join a parent path and a map key: `a` + `b` → `a.b`; root + `b` → `b`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Render a `serde_path_to_error` path in our syntax, under `prefix`.
pub fn path_string(prefix: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = prefix.to_string();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

fn pos(l: &serde_saphyr::Location) -> Pos {
    Pos {
        line: l.line() as usize,
        column: l.column() as usize,
    }
}

/// Drop the position suffix and developer hints from a parser message; the
/// position is printed separately.
fn syntax_message(raw: &str) -> String {
    let msg = match raw.rfind(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    match msg.split_once(", set DuplicateKeyPolicy") {
        Some((head, _)) => head.to_string(),
        None => msg.to_string(),
    }
}

/// A YAML node as the parser typed it, with positions on every child.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_values_and_keys() {
        let doc = Document::parse("a: 1\nchecks:\n  - name: x\n    port: 80\n").unwrap();
        assert_eq!(
            doc.position("checks[0].port"),
            Pos {
                line: 4,
                column: 11
            }
        );
        assert_eq!(
            doc.key_position("checks[0].port"),
            Some(Pos { line: 4, column: 5 })
        );
        assert_eq!(
            doc.position("checks[0].missing"),
            Pos { line: 3, column: 5 }
        );
        assert_eq!(doc.value["checks"][0]["port"], 80);
    }

    #[test]
    fn syntax_errors_have_a_position_and_a_clean_message() {
        let (pos, msg) = Document::parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(pos, Pos { line: 2, column: 1 });
        assert_eq!(msg, "duplicate mapping key: a");
    }

    #[test]
    fn a_file_with_far_more_nodes_than_the_default_budget_parses() {
        // 60,000 checks of 5 nodes each: 300,001 nodes, over the library's
        // default of 250,000 (which stopped near 22,700 real checks).
        let mut text = String::from("checks:\n");
        for i in 0..60_000 {
            text.push_str(&format!("  - {{name: c{i}, kind: tcp}}\n"));
        }
        let doc = Document::parse(&text).expect("a large honest file parses");
        assert_eq!(doc.value["checks"].as_array().map(Vec::len), Some(60_000));
        assert_eq!(doc.position("checks[59999].kind").line, 60_001);
    }

    #[test]
    fn an_alias_bomb_is_refused_with_a_position() {
        // Each level doubles the expansion; 2^40 nodes if expanded.
        let mut text = String::from("a0: &a0 [x, x]\n");
        for i in 1..40 {
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
        }
        let (pos, msg) = Document::parse(&text).expect_err("an alias bomb is refused");
        assert!(pos.line >= 1, "{pos:?}");
        assert!(!msg.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused_with_a_position() {
        let text = format!("a: {}1{}\n", "[".repeat(500), "]".repeat(500));
        let (pos, msg) = Document::parse(&text).expect_err("deep nesting is refused");
        assert_eq!(pos.line, 1, "{msg}");
        assert!(pos.column > 1, "{pos:?}: {msg}");
    }
}
