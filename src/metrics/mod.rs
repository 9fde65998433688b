//! Owns every metric the exporter serves: the per-check state that runs
//! write into ([`state`]), the rendering of one check's series when its
//! state changes ([`render`]) and its compact stored form ([`compact`]),
//! the scrape-time body and its formats ([`exposition`]), written in
//! pieces ([`body`]) and in gzip ([`compress`]), and the exporter's
//! self-metrics ([`exporter`]).
//!
//! Kind-specific values come only from the last run's snapshot, so when a
//! check fails, values it could not measure disappear instead of going
//! stale.

mod body;
mod compact;
mod compress;
mod exporter;
mod exposition;
mod render;
mod state;

pub use body::PlainBody;
pub use compress::{accepts_gzip, exposition_gzip};
pub use exporter::registry;
pub use exposition::{exposition, probe_exposition, Format};
pub use state::{CheckState, InFlight, RunRecord, RunSummary, Store, HISTORY_LEN};
