//! The compact form of a check's pre-rendered sample lines. Every line of a
//! check starts with its family's sample name and the check's own labels
//! (`check`, `kind` and the user's labels), which make up most of its
//! bytes; the stored form replaces that prefix with one marker byte, and a
//! scrape writes it back. The check's label text is kept once, shared by
//! all of its renders ([`LabelBlocks`]).
//!
//! Markers are bytes 1 to 4 and 16 to 24, which the text format never
//! contains outside label values; a check whose text holds one anyway is
//! stored as it is. Bytes 16 to 24 also stand for a `reason` label of the
//! fixed set after the check's labels, so the nine failure counters every
//! check exports take a few bytes each.

use std::fmt::{self, Write as _};

use crate::checks::Reason;

/// What a marker byte stands for: the family's name (with `_total` for a
/// counter's sample), `{`, the check's labels with or without `kind`, and
/// perhaps a `reason` label.
#[derive(Debug, Clone, Copy)]
struct Marker {
    byte: u8,
    total: bool,
    with_kind: bool,
    reason: Option<Reason>,
}

const fn marker(byte: u8, total: bool, with_kind: bool) -> Marker {
    Marker {
        byte,
        total,
        with_kind,
        reason: None,
    }
}

/// Every marker; those with a reason first, as they match longer prefixes.
const MARKERS: [Marker; 4 + Reason::ALL.len()] = {
    let mut all = [marker(0, false, false); 4 + Reason::ALL.len()];
    let mut i = 0;
    while i < Reason::ALL.len() {
        all[i] = Marker {
            byte: 16 + i as u8,
            total: true,
            with_kind: true,
            reason: Some(Reason::ALL[i]),
        };
        i += 1;
    }
    all[i] = marker(1, false, true);
    all[i + 1] = marker(2, true, true);
    all[i + 2] = marker(3, false, false);
    all[i + 3] = marker(4, true, false);
    all
};

fn is_marker(byte: u8) -> bool {
    (1..=4).contains(&byte) || (16..16 + Reason::ALL.len() as u8).contains(&byte)
}

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
    !text.bytes().any(is_marker)
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
    MARKERS.iter().find_map(|m| {
        let after = if m.total {
            after_name.strip_prefix("_total{")?
        } else {
            after_name.strip_prefix('{')?
        };
        let mut rest = after.strip_prefix(blocks.block(m.with_kind))?;
        if let Some(reason) = m.reason {
            rest = rest
                .strip_prefix(",reason=\"")?
                .strip_prefix(reason.as_str())?
                .strip_prefix('"')?;
        }
        rest.starts_with([',', '}']).then_some((m.byte, rest))
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
        match MARKERS.iter().find(|m| m.byte == first) {
            Some(m) => {
                out.write_str(family)?;
                out.write_str(if m.total { "_total{" } else { "{" })?;
                out.write_str(blocks.block(m.with_kind))?;
                if let Some(reason) = m.reason {
                    out.write_str(",reason=\"")?;
                    out.write_str(reason.as_str())?;
                    out.write_str("\"")?;
                }
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
            "\u{13}} 0\n\u{1}} 1.0\n\u{3},phase=\"tls\"} 0.5\nrunbook_check_failures{check=\"other\"} 2\n"
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
        assert!(!compactable("x{check=\"a\u{10}\"} 1\n"));
    }

    #[test]
    fn a_reason_outside_the_set_keeps_its_label_text() {
        let blocks = LabelBlocks::new("db", "postgres", &[]);
        let lines = "f_total{check=\"db\",kind=\"postgres\",reason=\"timeouts\"} 1\n\
                     f_total{check=\"db\",kind=\"postgres\",reason=\"timeout\",x=\"y\"} 2\n";
        let (compact, full) = round_trip(lines, "f", &blocks);
        assert_eq!(full, lines);
        assert_eq!(compact, "\u{2},reason=\"timeouts\"} 1\n\u{10},x=\"y\"} 2\n");
    }
}
