//! The documentation keeps up with the code: every metric a check kind can
//! emit is documented, and every kind has its reference page.

use std::path::Path;

use runbook_exporter::checks::{metric_descs, KINDS};

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn all_docs() -> String {
    let mut text = read("README.md");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/checks");
    for entry in std::fs::read_dir(dir).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    text
}

#[test]
fn every_kind_specific_metric_is_documented() {
    let docs = all_docs();
    let missing: Vec<String> = metric_descs()
        .iter()
        .map(|d| d.exposed_name())
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "undocumented metrics: {missing:?}");
}

#[test]
fn every_kind_has_a_reference_page_linked_from_the_readme() {
    let readme = read("README.md");
    for kind in KINDS {
        let page = format!("docs/checks/{kind}.md");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(&page).exists(),
            "{page} missing"
        );
        assert!(
            readme.contains(&format!("({page})")),
            "README does not link {page}"
        );
    }
}

#[test]
fn every_help_text_says_the_value_comes_from_the_last_run() {
    let vague: Vec<String> = metric_descs()
        .iter()
        .filter(|d| !d.help.contains("last scheduled run"))
        .map(|d| format!("{}: {:?}", d.name, d.help))
        .collect();
    assert!(vague.is_empty(), "{vague:#?}");
}

/// The text of the README section whose heading is `heading` (up to the
/// next `## ` heading).
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"))
        + 1;
    let rest = &text[start..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| i + heading.len());
    &rest[..end]
}

/// GitHub's anchors for the headings of a Markdown text (fenced code
/// skipped): lower case, spaces as dashes, other punctuation dropped.
fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            let title = line.trim_start_matches('#').trim().to_lowercase();
            out.push(
                title
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect(),
            );
        }
    }
    out
}

#[test]
fn the_security_guide_is_linked_from_the_readme_and_its_links_resolve() {
    let readme = read("README.md");
    for heading in [
        "## HTTP endpoints",
        "## Running as a sidecar",
        "## Scaling out",
        "## Securing it",
    ] {
        assert!(
            section(&readme, heading).contains("](docs/security.md)"),
            "README's {heading:?} does not link docs/security.md"
        );
    }

    let guide = read("docs/security.md");
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let docs_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut checked = 0;
    for m in link.captures_iter(&guide) {
        let target = &m[1];
        if target.starts_with("http://") || target.starts_with("https://") {
            continue;
        }
        checked += 1;
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target, None),
        };
        let file = if path.is_empty() {
            docs_dir.join("security.md")
        } else {
            docs_dir.join(path)
        };
        assert!(
            file.exists(),
            "docs/security.md links {target}: no such file"
        );
        if let Some(anchor) = anchor {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                anchors(&text).iter().any(|a| a == anchor),
                "docs/security.md links {target}: no such heading"
            );
        }
    }
    assert!(checked >= 5, "only {checked} links checked");
}
