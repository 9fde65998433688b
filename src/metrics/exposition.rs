//! What a scrape serves: the format negotiated from `Accept` (OpenMetrics
//! or the classic 0.0.4 text), and the body, made by concatenating every
//! check's pre-rendered families and appending the exporter's own metrics.
//! A scrape copies text; it never encodes a check.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use prometheus_client::registry::Registry;

use super::body;
use super::compact::{self, LabelBlocks};
use super::render::{self, OneRun};
use super::state::{CheckState, RunRecord};

/// One check's series, split by metric family, stored compactly: the
/// family list is shared by every check with the same families (interned),
/// and the sample lines of all families are one string.
#[derive(Debug)]
pub(super) struct Rendered {
    layout: Arc<Layout>,
    /// Every family's sample lines, one family after the other, in compact
    /// form ([`compact`]) when `blocks` is set.
    text: Box<str>,
    /// The check's label text the compact lines refer to.
    blocks: Option<Arc<LabelBlocks>>,
    /// Where each family's lines end in `text`, in `layout` order.
    ends: Box<[u32]>,
}

impl Default for Rendered {
    fn default() -> Self {
        Self {
            layout: Layout::interned(Vec::new()),
            text: Box::default(),
            blocks: None,
            ends: Box::default(),
        }
    }
}

/// The families of a rendered check, in order.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) families: Vec<Arc<FamilyMeta>>,
}

impl Layout {
    /// The shared layout with these families (thousands of checks of one
    /// kind have the same few).
    fn interned(families: Vec<Arc<FamilyMeta>>) -> Arc<Layout> {
        static TABLE: Mutex<Vec<Arc<Layout>>> = Mutex::new(Vec::new());
        let same = |l: &Layout| {
            l.families.len() == families.len()
                && l.families
                    .iter()
                    .zip(&families)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        };
        let Ok(mut table) = TABLE.lock() else {
            return Arc::new(Layout { families });
        };
        if let Some(layout) = table.iter().find(|l| same(l)) {
            return layout.clone();
        }
        // Layouts are few (a handful per kind); a family whose metadata
        // changed (a new HELP text) makes a new one, and the old ones go.
        table.retain(|l| Arc::strong_count(l) > 1);
        let layout = Arc::new(Layout { families });
        table.push(layout.clone());
        layout
    }
}
/// A family's name and metadata lines, shared by every check that has the
/// family (interned: thousands of checks share a handful of families).
#[derive(Debug)]
pub(super) struct FamilyMeta {
    pub(super) name: String,
    /// `# HELP`, `# TYPE` (and `# UNIT`) lines in OpenMetrics.
    pub(super) header: String,
    /// The same metadata in the classic text format.
    pub(super) text_header: String,
}

impl FamilyMeta {
    fn interned(name: &str, header: &str) -> Arc<FamilyMeta> {
        static TABLE: Mutex<BTreeMap<String, Arc<FamilyMeta>>> = Mutex::new(BTreeMap::new());
        let make = || {
            Arc::new(FamilyMeta {
                name: name.to_string(),
                header: header.to_string(),
                text_header: openmetrics_to_text(header),
            })
        };
        let Ok(mut table) = TABLE.lock() else {
            return make();
        };
        match table.get(name) {
            Some(meta) if meta.header == header => meta.clone(),
            _ => {
                let meta = make();
                table.insert(name.to_string(), meta.clone());
                meta
            }
        }
    }
}

impl Rendered {
    /// Split prometheus-client's OpenMetrics output (without `# EOF`) into
    /// families, stored compactly against the check's `blocks`.
    pub(super) fn parse(om: &str, blocks: &Arc<LabelBlocks>) -> Self {
        let blocks = compact::compactable(om).then(|| blocks.clone());
        // Each family is its metadata lines then its sample lines, so both
        // are ranges of `om`: (name, metadata, samples) per family, in order.
        let mut parts: Vec<(&str, &str, &str)> = Vec::new();
        let (mut at, mut samples_at) = (0, 0);
        let mut name = None;
        for line in om.split_inclusive('\n') {
            let start = at;
            at += line.len();
            if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some(prev) = name.take() {
                    parts.push(split_family(om, prev, samples_at, start));
                }
                name = Some((rest.split(' ').next().unwrap_or(""), start));
                samples_at = at;
            } else if line.starts_with('#') {
                samples_at = at;
            }
        }
        if let Some(prev) = name {
            parts.push(split_family(om, prev, samples_at, at));
        }
        let mut text = String::with_capacity(parts.iter().map(|p| p.2.len()).sum());
        let mut ends = Vec::with_capacity(parts.len());
        let mut families = Vec::with_capacity(parts.len());
        for (name, header, samples) in parts {
            match &blocks {
                Some(b) => compact::compact_into(&mut text, samples, name, b),
                None => text.push_str(samples),
            }
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            families.push(FamilyMeta::interned(name, header));
        }
        Self {
            layout: Layout::interned(families),
            text: text.into_boxed_str(),
            blocks,
            ends: ends.into_boxed_slice(),
        }
    }

    /// This check's families, in order (shared by checks of one kind).
    pub(super) fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Write one family's lines (from [`Self::lines`]) in full.
    pub(super) fn write_family<W: std::fmt::Write>(
        &self,
        out: &mut W,
        family: &FamilyMeta,
        lines: &str,
    ) -> std::fmt::Result {
        match &self.blocks {
            Some(b) => compact::expand(out, lines, &family.name, b),
            None => out.write_str(lines),
        }
    }

    /// The sample lines (compact) of the family at `pos` in the layout.
    pub(super) fn lines(&self, pos: usize) -> &str {
        let start = pos.checked_sub(1).map_or(0, |p| self.ends[p]);
        let end = self.ends.get(pos).copied().unwrap_or(start);
        self.text.get(start as usize..end as usize).unwrap_or("")
    }
}

/// One family of `om`: its name, the metadata from where its `# HELP`
/// starts to `samples_at`, and the sample lines from there to `end`.
fn split_family<'a>(
    om: &'a str,
    (name, start): (&'a str, usize),
    samples_at: usize,
    end: usize,
) -> (&'a str, &'a str, &'a str) {
    (name, &om[start..samples_at], &om[samples_at..end])
}

/// The `/metrics` body: every check's pre-rendered series, merged by
/// family, then the exporter's own metrics from `registry`.
pub fn exposition(
    checks: &[Arc<CheckState>],
    registry: Option<&Registry>,
    format: Format,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = body::write_checks(rendered_of(checks), format, &mut out);
    out.push_str(&tail(registry, format));
    out
}

/// The answer to a `/probe`: the series of one run of a check, rendered
/// straight to text (no stored state, nothing to merge), then `# EOF` in
/// OpenMetrics.
pub fn probe_exposition(
    name: String,
    kind: &'static str,
    labels: Vec<(String, String)>,
    mut record: RunRecord,
    format: Format,
) -> String {
    let samples = record.take_samples();
    let run = OneRun {
        name,
        kind,
        labels,
        record: Arc::new(record),
    };
    render::render(Arc::new(run), samples, |om| match format {
        Format::OpenMetrics => format!("{om}# EOF\n"),
        Format::Text => openmetrics_to_text(om),
    })
}

/// Each check's current pre-rendered series.
pub(super) fn rendered_of(checks: &[Arc<CheckState>]) -> Vec<Arc<Rendered>> {
    checks.iter().map(|c| c.rendered()).collect()
}

/// The end of the body: the exporter's own metrics (read at each scrape)
/// and, in OpenMetrics, `# EOF`.
pub(super) fn tail(registry: Option<&Registry>, format: Format) -> String {
    let mut out = String::new();
    if let Some(registry) = registry {
        let mut om = String::new();
        // Writing to a String cannot fail; a collector that fails would
        // leave a partial body, which is still served rather than nothing.
        let _ = prometheus_client::encoding::text::encode_registry(&mut om, registry);
        match format {
            Format::OpenMetrics => out.push_str(&om),
            Format::Text => out.push_str(&openmetrics_to_text(&om)),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// The exposition formats we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// Pick the format from an `Accept` header: the supported media type
    /// with the highest q-value; OpenMetrics wins ties; the classic text
    /// format when nothing we serve is named.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" => Format::Text,
                _ => continue,
            };
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let better = match best {
                None => true,
                Some((bq, bf)) => {
                    q > bq || (q == bq && format == Format::OpenMetrics && bf != format)
                }
            };
            if q > 0.0 && better {
                best = Some((q, format));
            }
        }
        best.map(|(_, f)| f).unwrap_or(Format::Text)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Convert OpenMetrics text (as produced by prometheus-client, without
/// exemplars or `_created`) to the classic 0.0.4 text format: no `# EOF`, no
/// `# UNIT`, counters' metadata named with their `_total` suffix, and
/// `unknown` spelled `untyped`.
fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut pending_help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            pending_help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, ty) = match ty {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                "info" | "stateset" => (name.to_string(), "gauge"),
                other => (name.to_string(), other),
            };
            if let Some(help) = pending_help.take() {
                let text = help.split_once(' ').map(|(_, t)| t).unwrap_or("");
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {ty}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Unit;

    use super::*;
    use crate::checks::{MetricDesc, MetricKind, Sample};
    use crate::metrics::RunRecord;

    static PHASE: MetricDesc = MetricDesc {
        name: "test_phase_duration",
        help: "Phase duration in the last scheduled run.",
        unit: Some(Unit::Seconds),
        kind: MetricKind::Gauge,
    };
    static READS: MetricDesc = MetricDesc {
        name: "other_reads",
        help: "Reads as of the last scheduled run.",
        unit: None,
        kind: MetricKind::Counter,
    };

    fn run(samples: Vec<Sample>) -> RunRecord {
        RunRecord {
            finished_at: 1_700_000_000.0,
            duration: Duration::from_millis(5),
            result: Ok(samples),
            notes: Vec::new(),
        }
    }

    #[test]
    fn pre_rendered_checks_merge_into_one_block_per_family() {
        let a = CheckState::new("a".into(), "test", vec![("team".into(), "x".into())]);
        a.record(run(vec![
            Sample::new(&PHASE, 0.5).with_label("phase", "connect")
        ]));
        let b = CheckState::new("b".into(), "other", vec![]);
        b.record(run(vec![Sample::new(&READS, 7.0)]));
        let c = CheckState::new("c".into(), "test", vec![]);
        c.record(run(vec![
            Sample::new(&PHASE, 0.25).with_label("phase", "connect")
        ]));
        let om = exposition(
            &[a.clone(), b.clone(), c.clone()],
            None,
            Format::OpenMetrics,
        );
        assert!(om.ends_with("# EOF\n"));
        let types: Vec<&str> = om.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique, "each family once");
        // Samples of a family are contiguous, after its metadata.
        let phase: Vec<&str> = om
            .lines()
            .skip_while(|l| !l.starts_with("# TYPE runbook_test_phase_duration_seconds"))
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            phase,
            [
                "runbook_test_phase_duration_seconds{check=\"a\",team=\"x\",phase=\"connect\"} 0.5",
                "runbook_test_phase_duration_seconds{check=\"c\",phase=\"connect\"} 0.25",
            ]
        );
        assert!(om.contains(
            "# TYPE runbook_other_reads counter\nrunbook_other_reads_total{check=\"b\"} 7.0\n"
        ));
        let text = exposition(&[a, b, c], None, Format::Text);
        assert!(text.contains("# TYPE runbook_other_reads_total counter\nrunbook_other_reads_total{check=\"b\"} 7.0\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn a_probe_answer_is_what_a_check_that_ran_once_exports() {
        use crate::checks::{Failure, Reason};
        let failed = RunRecord {
            result: Err(Failure::new(Reason::Tls, "bad certificate")
                .with_samples(vec![Sample::new(&PHASE, 0.1).with_label("phase", "connect")])),
            ..run(Vec::new())
        };
        let passed = run(vec![
            Sample::new(&PHASE, 0.5).with_label("phase", "connect"),
            Sample::new(&READS, 3.0),
        ]);
        let labels = vec![("team".to_string(), "x\"y".to_string())];
        for record in [passed, failed] {
            for format in [Format::OpenMetrics, Format::Text] {
                let state = CheckState::new("p".into(), "test", labels.clone());
                state.record(record.clone());
                let want = exposition(&[state], None, format);
                let got =
                    probe_exposition("p".into(), "test", labels.clone(), record.clone(), format);
                assert_eq!(got, want, "{format:?}");
            }
        }
    }

    #[test]
    fn families_without_samples_keep_their_own_metadata() {
        let blocks = Arc::new(LabelBlocks::new("c", "test", &[]));
        let r = Rendered::parse(
            "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\nb 1\n",
            &blocks,
        );
        let got: Vec<(&str, &str, &str)> = (r.layout.families.iter().enumerate())
            .map(|(pos, meta)| (meta.name.as_str(), meta.header.as_str(), r.lines(pos)))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "# HELP a A.\n# TYPE a gauge\n", ""),
                ("b", "# HELP b B.\n# TYPE b gauge\n", "b 1\n")
            ]
        );
    }

    #[test]
    fn a_restarted_check_drops_its_last_run_and_keeps_its_counters() {
        let a = CheckState::new("a".into(), "test", vec![]);
        a.record(run(vec![
            Sample::new(&PHASE, 0.5).with_label("phase", "connect")
        ]));
        let om = exposition(std::slice::from_ref(&a), None, Format::OpenMetrics);
        assert!(
            om.contains("runbook_test_phase_duration_seconds{check=\"a\",phase=\"connect\"} 0.5\n")
        );
        assert!(
            a.last().is_some_and(|r| r.samples().is_empty()),
            "kept as text only"
        );
        a.restart(Duration::from_secs(30));
        let om = exposition(&[a], None, Format::OpenMetrics);
        assert!(!om.contains("runbook_test_phase_duration_seconds{"));
        assert!(!om.contains("runbook_check_up{"));
        assert!(om.contains("runbook_check_runs_total{check=\"a\",kind=\"test\"} 1\n"));
    }

    #[test]
    fn a_scheduled_check_exports_its_interval_and_a_probe_run_none() {
        let scheduled = CheckState::scheduled("a".into(), "test", vec![], Duration::from_secs(120));
        let probe = CheckState::new("b".into(), "test", vec![]);
        let om = exposition(&[scheduled, probe], None, Format::OpenMetrics);
        assert!(om.contains("runbook_check_interval_seconds{check=\"a\",kind=\"test\"} 120"));
        assert!(!om.contains("runbook_check_interval_seconds{check=\"b\""));
    }

    #[test]
    fn negotiation_follows_q_values() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2,text/plain;q=0.9")),
            Format::Text
        );
    }

    #[test]
    fn classic_text_names_counters_with_total_and_drops_eof() {
        let om = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{x=\"1\"} 3\n# HELP b_seconds B.\n# TYPE b_seconds gauge\n# UNIT b_seconds seconds\nb_seconds 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_runs_total Runs.\n# TYPE a_runs_total counter\na_runs_total{x=\"1\"} 3\n# HELP b_seconds B.\n# TYPE b_seconds gauge\nb_seconds 1.5\n"
        );
    }
}
