//! What several kinds need and none owns: reaching a server (`dial`,
//! `proxy`, `tls`), reading its errors (`errors`), reconnecting
//! (`backoff`), where a probe may go (`targets`), and the config value
//! types kinds deserialize
//! (`secret`, `duration`). Nothing here names a kind, and nothing here
//! imports `config/` or `metrics/`: the dependencies point one way, from
//! the kinds and the loader down to here.

pub mod backoff;
pub mod dial;
pub mod duration;
pub mod errors;
pub mod proxy;
pub mod secret;
pub mod targets;
pub mod tls;

/// The one-line gist of a regex error (its Display spans several lines).
pub fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .last()
        .map(|l| l.trim_start_matches("error: ").to_string())
        .unwrap_or(text)
}
