//! Writing the checks' part of a `/metrics` body from their pre-rendered
//! series: each family's metadata once, then every check's samples of it,
//! families in order of first appearance. [`Cursor`] writes it in pieces,
//! resuming where it stopped, so that the uncompressed body can be sent in
//! chunks as the client reads ([`PlainBody`]) and the gzip one deflated as
//! it is written; neither holds the whole text (about 130 MB at 100,000
//! checks).
//!
//! The work is planned on the checks' layouts, which are few (a handful per
//! kind): a body keeps a layout number per check, not a list of every
//! check's lines per family.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::exposition::{rendered_of, tail, FamilyMeta, Format, Layout, Rendered};
use super::state::CheckState;

/// How much text a chunk of a streamed body holds, at least (a chunk ends
/// after the check that reaches it).
pub(super) const CHUNK: usize = 64 * 1024;

/// Where the writing of the checks' part stands.
pub(super) struct Cursor {
    rendered: Vec<Arc<Rendered>>,
    format: Format,
    /// The families, in order of first appearance.
    order: Vec<Arc<FamilyMeta>>,
    /// For each distinct layout, the positions each family of `order`
    /// takes in it (a family name may repeat in a layout; usually it is one).
    at: Vec<Vec<Vec<usize>>>,
    /// Each check's layout, an index into `at`.
    layout_of: Vec<u32>,
    /// The family being written and the next check to write of it; `None`
    /// before its metadata is written.
    family: usize,
    check: Option<usize>,
}

impl Cursor {
    pub(super) fn new(rendered: Vec<Arc<Rendered>>, format: Format) -> Self {
        let mut order: Vec<Arc<FamilyMeta>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut layouts: Vec<&Arc<Layout>> = Vec::new();
        let mut at: Vec<Vec<Vec<usize>>> = Vec::new();
        let mut layout_of = Vec::with_capacity(rendered.len());
        for r in &rendered {
            let layout = r.layout();
            let known = layouts.iter().rposition(|l| Arc::ptr_eq(l, layout));
            let id = known.unwrap_or_else(|| {
                let mut positions: Vec<Vec<usize>> = Vec::new();
                for (pos, meta) in layout.families.iter().enumerate() {
                    let g = *index.entry(meta.name.clone()).or_insert_with(|| {
                        order.push(meta.clone());
                        order.len() - 1
                    });
                    if positions.len() <= g {
                        positions.resize(g + 1, Vec::new());
                    }
                    positions[g].push(pos);
                }
                layouts.push(layout);
                at.push(positions);
                at.len() - 1
            });
            layout_of.push(u32::try_from(id).unwrap_or(u32::MAX));
        }
        Self {
            rendered,
            format,
            order,
            at,
            layout_of,
            family: 0,
            check: None,
        }
    }

    /// Write on from where the last call stopped until `budget` bytes or
    /// more are written (after a whole check's lines) or the checks' part
    /// is complete. True when it is complete.
    pub(super) fn write<W: fmt::Write>(
        &mut self,
        out: &mut W,
        budget: usize,
    ) -> Result<bool, fmt::Error> {
        let mut out = Counting {
            inner: out,
            written: 0,
        };
        while let Some(family) = self.order.get(self.family) {
            let from = match self.check {
                Some(i) => i,
                None => {
                    out.write_str(match self.format {
                        Format::OpenMetrics => &family.header,
                        Format::Text => &family.text_header,
                    })?;
                    0
                }
            };
            for (i, r) in self.rendered.iter().enumerate().skip(from) {
                let positions = self.at[self.layout_of[i] as usize].get(self.family);
                for &pos in positions.map(Vec::as_slice).unwrap_or(&[]) {
                    r.write_family(&mut out, family, r.lines(pos))?;
                }
                if out.written >= budget && i + 1 < self.rendered.len() {
                    self.check = Some(i + 1);
                    return Ok(false);
                }
            }
            self.family += 1;
            self.check = None;
            if out.written >= budget {
                return Ok(self.family >= self.order.len());
            }
        }
        Ok(true)
    }
}

/// Counts what passes through to `inner`.
struct Counting<'a, W> {
    inner: &'a mut W,
    written: usize,
}

impl<W: fmt::Write> fmt::Write for Counting<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.written += s.len();
        self.inner.write_str(s)
    }
}

/// Write the whole checks' part of a body into `out`.
pub(super) fn write_checks<W: fmt::Write>(
    rendered: Vec<Arc<Rendered>>,
    format: Format,
    out: &mut W,
) -> fmt::Result {
    Cursor::new(rendered, format)
        .write(out, usize::MAX)
        .map(drop)
}

/// The uncompressed `/metrics` body, made chunk by chunk as the client
/// reads: the checks' part from a [`Cursor`], then the exporter's own
/// metrics (read when the scrape began) and, in OpenMetrics, `# EOF`.
pub struct PlainBody {
    cursor: Cursor,
    checks_done: bool,
    tail: Option<String>,
}

impl PlainBody {
    pub fn new(checks: &[Arc<CheckState>], registry: Option<&Registry>, format: Format) -> Self {
        Self {
            cursor: Cursor::new(rendered_of(checks), format),
            checks_done: false,
            tail: Some(tail(registry, format)),
        }
    }

    /// The next piece of the body, about [`CHUNK`] bytes or the rest;
    /// `None` once all was given.
    pub fn next_chunk(&mut self) -> Option<String> {
        if self.checks_done {
            return self.tail.take();
        }
        let mut chunk = String::with_capacity(CHUNK + CHUNK / 4);
        // Writing to a String cannot fail.
        self.checks_done = self.cursor.write(&mut chunk, CHUNK).unwrap_or(true);
        if self.checks_done {
            if let Some(tail) = self.tail.take() {
                chunk.push_str(&tail);
            }
        }
        Some(chunk)
    }

    /// Whether [`Self::next_chunk`] has given the whole body.
    pub fn is_done(&self) -> bool {
        self.checks_done && self.tail.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checks::{MetricDesc, MetricKind, Sample};
    use crate::metrics::{exposition, RunRecord};

    static ROWS: MetricDesc = MetricDesc {
        name: "body_rows",
        help: "Rows seen in the last scheduled run.",
        unit: None,
        kind: MetricKind::Gauge,
    };

    /// Checks of two kinds (two layouts), every other one with samples.
    fn checks(n: usize) -> Vec<Arc<CheckState>> {
        (0..n)
            .map(|i| {
                let kind = if i % 3 == 0 { "other" } else { "test" };
                let state = CheckState::new(format!("c{i}"), kind, vec![]);
                if i % 2 == 0 {
                    state.record(RunRecord {
                        finished_at: 1_700_000_000.0,
                        duration: Duration::from_millis(3),
                        result: Ok(vec![Sample::new(&ROWS, i as f64).with_label("table", "t")]),
                        notes: Vec::new(),
                    });
                }
                state
            })
            .collect()
    }

    #[test]
    fn a_cursor_resumed_after_every_check_writes_the_same_text() {
        let checks = checks(50);
        for format in [Format::OpenMetrics, Format::Text] {
            let mut whole = String::new();
            write_checks(rendered_of(&checks), format, &mut whole).unwrap();
            let mut cursor = Cursor::new(rendered_of(&checks), format);
            let (mut pieces, mut calls) = (String::new(), 0);
            while !cursor.write(&mut pieces, 1).unwrap() {
                calls += 1;
                assert!(calls < 10_000, "the cursor never finished");
            }
            assert_eq!(pieces, whole, "{format:?}");
            assert!(calls > 50, "stopped after each check: {calls} calls");
        }
    }

    #[test]
    fn a_plain_body_comes_in_chunks_that_add_up_to_the_exposition() {
        let checks = checks(2_000);
        let want = exposition(&checks, None, Format::OpenMetrics);
        let mut body = PlainBody::new(&checks, None, Format::OpenMetrics);
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next_chunk() {
            chunks.push(chunk);
            assert!(chunks.len() < 10_000, "the body never ended");
        }
        assert!(body.is_done());
        assert!(
            chunks.len() > 2,
            "{} chunks of a {} byte body",
            chunks.len(),
            want.len()
        );
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() >= CHUNK));
        assert_eq!(chunks.concat(), want);
    }
}
