//! The compact form of a check's pre-rendered sample lines. Every line of a
//! check starts with its family's sample name and the check's own labels
//! (`check`, `kind` and the user's labels), which make up most of its
//! bytes; the stored form replaces that prefix with one marker byte, and a
//! scrape writes it back. The check's label text is kept once, shared by
//! all of its renders ([`LabelBlocks`]).
//!
//! Markers are bytes 1 to 4, which the text format never contains outside
//! label values; a check whose text holds one anyway is stored as it is.

use std::fmt::{self, Write as _};

/// What a marker stands for: the family's name (with `_total` for a
/// counter's sample), `{`, and the check's labels with or without `kind`.
const MARKERS: [(u8, bool, bool); 4] = [
    // (byte, `_total`, with `kind`)
    (1, false, true),
    (2, true, true),
    (3, false, false),
    (4, true, false),
];

/// A check's own labels as the text format writes them: `check="…",
/// kind="…",user…` (the shared families) and `check="…",user…` (the kind's
/// samples), in one string.
#[derive(Debug)]
pub(super) struct LabelBlocks {
    text: Box<str>,
    /// Where the second block starts in `text`.
    split: usize,
}

impl LabelBlocks {
    pub(super) fn new(name: &str, kind: &str, labels: &[(String, String)]) -> Self {
        let mut user = String::new();
        for (k, v) in labels {
            let _ = write!(user, ",{k}=\"");
            escape_into(&mut user, v);
            user.push('"');
        }
        let mut check = String::from("check=\"");
        escape_into(&mut check, name);
        check.push('"');
        let mut text = format!("{check},kind=\"");
        escape_into(&mut text, kind);
        text.push('"');
        text.push_str(&user);
        let split = text.len();
        text.push_str(&check);
        text.push_str(&user);
        Self {
            text: text.into_boxed_str(),
            split,
        }
    }

    fn block(&self, with_kind: bool) -> &str {
        if with_kind {
            &self.text[..self.split]
        } else {
            &self.text[self.split..]
        }
    }
}

/// Escape a label value as prometheus-client does.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Whether `text` can be stored compactly (holds no marker byte).
pub(super) fn compactable(text: &str) -> bool {
    !text.bytes().any(|b| (1..=4).contains(&b))
}

/// Append `lines` (one family's sample lines) to `out` in compact form.
pub(super) fn compact_into(out: &mut String, lines: &str, family: &str, blocks: &LabelBlocks) {
    for line in lines.split_inclusive('\n') {
        match compact_line(line, family, blocks) {
            Some((marker, rest)) => {
                out.push(char::from(marker));
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
    }
}

/// The marker and the rest of `line`, when it starts with a prefix a
/// marker stands for.
fn compact_line<'a>(line: &'a str, family: &str, blocks: &LabelBlocks) -> Option<(u8, &'a str)> {
    let after_name = line.strip_prefix(family)?;
    MARKERS.iter().find_map(|&(marker, total, with_kind)| {
        let after = if total {
            after_name.strip_prefix("_total{")?
        } else {
            after_name.strip_prefix('{')?
        };
        let rest = after.strip_prefix(blocks.block(with_kind))?;
        rest.starts_with([',', '}']).then_some((marker, rest))
    })
}

/// Write compact `text` (one family's lines) out in full.
pub(super) fn expand<W: fmt::Write>(
    out: &mut W,
    text: &str,
    family: &str,
    blocks: &LabelBlocks,
) -> fmt::Result {
    for line in text.split_inclusive('\n') {
        let first = line.as_bytes().first().copied().unwrap_or(0);
        match MARKERS.iter().find(|(m, _, _)| *m == first) {
            Some(&(_, total, with_kind)) => {
                out.write_str(family)?;
                out.write_str(if total { "_total{" } else { "{" })?;
                out.write_str(blocks.block(with_kind))?;
                out.write_str(&line[1..])?;
            }
            None => out.write_str(line)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(lines: &str, family: &str, blocks: &LabelBlocks) -> (String, String) {
        let mut compact = String::new();
        compact_into(&mut compact, lines, family, blocks);
        let mut full = String::new();
        expand(&mut full, &compact, family, blocks).unwrap();
        (compact, full)
    }

    #[test]
    fn lines_shrink_to_a_marker_and_come_back_whole() {
        let blocks = LabelBlocks::new("api", "http", &[("team".into(), "pay\"ments".into())]);
        let lines = "runbook_check_failures_total{check=\"api\",kind=\"http\",team=\"pay\\\"ments\",reason=\"dns\"} 0\n\
                     runbook_check_failures{check=\"api\",kind=\"http\",team=\"pay\\\"ments\"} 1.0\n\
                     runbook_check_failures{check=\"api\",team=\"pay\\\"ments\",phase=\"tls\"} 0.5\n\
                     runbook_check_failures{check=\"other\"} 2\n";
        let (compact, full) = round_trip(lines, "runbook_check_failures", &blocks);
        assert_eq!(full, lines);
        assert_eq!(
            compact,
            "\u{2},reason=\"dns\"} 0\n\u{1}} 1.0\n\u{3},phase=\"tls\"} 0.5\nrunbook_check_failures{check=\"other\"} 2\n"
        );
    }

    #[test]
    fn a_longer_label_value_is_not_taken_for_the_block() {
        // `check="api"` is a prefix of `check="api2"` only up to the quote.
        let blocks = LabelBlocks::new("api", "tcp", &[]);
        let lines = "x{check=\"api\",kind=\"tcp2\"} 1\n";
        let (compact, full) = round_trip(lines, "x", &blocks);
        assert_eq!(full, lines);
        assert_eq!(compact, "\u{3},kind=\"tcp2\"} 1\n");
        assert!(!compactable("x{check=\"a\u{1}\"} 1\n"));
    }
}
