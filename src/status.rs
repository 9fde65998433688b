//! The status page served at `/`: what an engineer opens first during an
//! incident. Every check with its state, the last run's duration and age,
//! the reason and message of its last failure (already scrubbed of
//! secrets), the time since its last success, and its recent runs.
//! Server-rendered HTML, no scripts; it refreshes itself every 10 seconds.

use std::fmt::Write as _;

use crate::clock::unix_now;
use crate::metrics::{CheckState, RunSummary};

/// Render the page for `checks`, failing checks first.
pub fn render(checks: &[std::sync::Arc<CheckState>]) -> String {
    let now = unix_now();
    let mut rows: Vec<(&CheckState, Option<bool>, Vec<RunSummary>)> = checks
        .iter()
        .map(|c| (c.as_ref(), c.last().map(|r| r.result.is_ok()), c.history()))
        .collect();
    // Failing first, then not yet run, then passing; config order within.
    rows.sort_by_key(|(_, ok, _)| match ok {
        Some(false) => 0,
        None => 1,
        Some(true) => 2,
    });
    let failing = rows.iter().filter(|(_, ok, _)| *ok == Some(false)).count();

    let mut html = String::with_capacity(4096 + rows.len() * 1024);
    html.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
        "<meta http-equiv=\"refresh\" content=\"10\">\n",
        "<title>runbook-exporter status</title>\n<style>\n",
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\n",
        "table{border-collapse:collapse;width:100%}\n",
        "th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #ddd;vertical-align:top}\n",
        "tr.fail td.state{color:#fff;background:#c62828;font-weight:bold}\n",
        "tr.ok td.state{color:#fff;background:#2e7d32}\n",
        "tr.pending td.state{background:#bbb}\n",
        ".runs span{display:inline-block;width:.7em;height:1.1em;margin-right:1px}\n",
        ".runs .ok{background:#2e7d32}.runs .fail{background:#c62828}\n",
        "code{font-size:.9em}\n</style></head><body>\n"
    ));
    let _ = writeln!(
        html,
        "<h1>runbook-exporter {}</h1>\n<p id=\"summary\">{} checks, <strong>{} failing</strong>. \
         <a href=\"metrics\">metrics</a> · <a href=\"-/healthy\">healthy</a> · <a href=\"-/ready\">ready</a></p>",
        env!("CARGO_PKG_VERSION"),
        rows.len(),
        failing
    );
    html.push_str(
        "<table>\n<thead><tr><th>check</th><th>kind</th><th>state</th><th>last run</th>\
         <th>duration</th><th>last success</th><th>reason</th><th>message</th><th>recent runs</th></tr></thead>\n<tbody>\n",
    );
    for (state, ok, history) in &rows {
        let (class, label) = match ok {
            Some(true) => ("ok", "UP"),
            Some(false) => ("fail", "DOWN"),
            None => ("pending", "PENDING"),
        };
        let last = state.last();
        // A passing run shows its notes (what it could not measure).
        let notes = last
            .as_ref()
            .map(|r| r.notes.join("; "))
            .unwrap_or_default();
        let (reason, message) = last
            .as_ref()
            .and_then(|r| r.failure())
            .map(|f| (f.reason.as_str(), f.message.as_str()))
            .unwrap_or(("", notes.as_str()));
        let _ = write!(
            html,
            "<tr class=\"{class}\" data-check=\"{name}\"><td><code>{name}</code></td><td>{kind}</td>\
             <td class=\"state\">{label}</td><td>{age}</td><td>{duration}</td><td>{success}</td>\
             <td>{reason}</td><td>{message}</td><td class=\"runs\">",
            name = escape(&state.name),
            kind = state.kind,
            age = last.as_ref().map(|r| ago(now - r.finished_at)).unwrap_or_default(),
            duration = last
                .as_ref()
                .map(|r| format!("{:.1} ms", r.duration.as_secs_f64() * 1000.0))
                .unwrap_or_default(),
            success = state.last_success().map(|t| ago(now - t)).unwrap_or_else(|| "never".into()),
            reason = reason,
            message = escape(message),
        );
        for run in history {
            let (c, title) = match run.failure() {
                None => ("ok", "ok".to_string()),
                Some(reason) => ("fail", reason.to_string()),
            };
            let _ = write!(
                html,
                "<span class=\"{c}\" title=\"{} ago, {:.1} ms, {}\"></span>",
                ago(now - run.finished_at()),
                run.duration_ms(),
                escape(&title)
            );
        }
        html.push_str("</td></tr>\n");
    }
    html.push_str("</tbody></table>\n</body></html>\n");
    html
}

/// A short age: `4s ago`, `3m ago`, `2h ago`, `5d ago`.
fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let text = match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    format!("{text} ago")
}

/// Escape text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(ago(5.2), "5s ago");
        assert_eq!(ago(600.0), "10m ago");
        assert_eq!(ago(7200.0), "2h ago");
        assert_eq!(ago(200_000.0), "2d ago");
    }
}
