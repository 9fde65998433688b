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
