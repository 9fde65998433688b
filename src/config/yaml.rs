//! YAML parsing with positions: the document is parsed straight into a
//! `serde_json::Value`, plus, when an error needs one, a map from each field's path
//! (`checks[2].timeout`) to the line and column where it was written.
//! Deserializing from the value with `serde_path_to_error` then gives every
//! error a path, and the map turns the path into a position, even inside
//! tagged enums where YAML libraries lose track of positions.
//!
//! The map is made by parsing the text a second time, at the first
//! question about a position: a valid file of 100,000 checks never holds
//! a path string per field.

use std::cell::OnceCell;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A parsed document: the value, and the text, to tell where each path
/// was written.
#[derive(Debug)]
pub struct Document<'t> {
    pub value: Value,
    text: &'t str,
    spans: OnceCell<Spans>,
}

/// Where each path's value and key were written.
#[derive(Debug, Default)]
struct Spans {
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

/// Parse `text` into `T` under the budget, with YAML 1.2 scalars.
fn parse_as<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (Pos, String)> {
    // YAML 1.2 booleans only: `name: y` or `country: no` stay strings.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        budget: budget_for(text.len()),
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let pos = e.location().map(|l| pos(&l)).unwrap_or_default();
        (pos, syntax_message(&e.without_snippet().to_string()))
    })
}

impl<'t> Document<'t> {
    /// Parse YAML text (YAML 1.2 scalars). The error is a position and a
    /// message.
    pub fn parse(text: &'t str) -> Result<Self, (Pos, String)> {
        // Straight into the value: a tree of positioned nodes beside it
        // would double the load's peak for a file of many checks.
        let value: Value = parse_as(text)?;
        Ok(Document {
            value,
            text,
            spans: OnceCell::new(),
        })
    }

    /// Where each path was written, from a second parse of the text, into
    /// positioned shapes (the first parse, into the value, accepted the
    /// same text under the same budget).
    fn spans(&self) -> &Spans {
        self.spans.get_or_init(|| {
            let mut spans = Spans::default();
            if let Ok(root) = parse_as::<Spanned<Node>>(self.text) {
                spans.record(&root, String::new());
            }
            spans
        })
    }

    /// Where the value at `path` was written; falls back to the nearest
    /// ancestor that has a position.
    pub fn position(&self, path: &str) -> Pos {
        let values = &self.spans().values;
        let mut p = path.to_string();
        loop {
            if let Some(pos) = values.get(&p) {
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
        self.spans().keys.get(path).copied()
    }
}

impl Spans {
    /// Note where `node` (at `path`) and everything under it was written.
    fn record(&mut self, node: &Spanned<Node>, path: String) {
        match &node.value {
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.record(item, format!("{path}[{i}]"));
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let child = join(&path, &key.value);
                    self.keys.insert(child.clone(), pos(&key.referenced));
                    self.record(value, child);
                }
            }
            _ => {}
        }
        self.values.insert(path, pos(&node.referenced));
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

/// A YAML node's shape, with positions on every child: what the second
/// parse keeps, to tell where each path was written.
enum Node {
    Scalar,
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
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
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
        assert!(doc.spans.get().is_none(), "no positions until one is asked");
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
