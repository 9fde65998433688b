//! What one `http` run measured: the time of each request phase (summed over
//! redirects), the redirects, the final status, TLS and body size, and the
//! samples they become. Kept on the failure path too, so a failed run still
//! reports how far it got.

use std::time::Duration;

use super::{BODY_SIZE, PHASE_DURATION, REDIRECTS, SSL, STATUS_CODE};
use crate::checks::Sample;

/// The request phases, in order; the `phase` label values.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
}

const PHASE_NAMES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

/// What one run measured so far, kept for the failure path too.
#[derive(Default)]
pub(super) struct Trace {
    /// Per [`Phase`], summed over redirects; `None` for phases not reached.
    phases: [Option<Duration>; 5],
    pub(super) redirects: u32,
    /// Status of the last response received, and whether it came over TLS.
    pub(super) status: Option<u16>,
    pub(super) final_tls: bool,
    pub(super) body_size: Option<usize>,
    /// Certificate expiry of the connection of the last response.
    pub(super) expiry: Option<Sample>,
    /// How the connection of the last response was made (IP version,
    /// addresses lost).
    pub(super) dial: Vec<Sample>,
}

impl Trace {
    /// Add `elapsed` to `phase`.
    pub(super) fn add(&mut self, phase: Phase, elapsed: Duration) {
        let slot = &mut self.phases[phase as usize];
        *slot = Some(slot.unwrap_or_default() + elapsed);
    }

    /// The samples of what was measured; phases not reached are absent.
    pub(super) fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (name, duration) in PHASE_NAMES.iter().zip(self.phases) {
            if let Some(d) = duration {
                out.push(Sample::new(&PHASE_DURATION, d.as_secs_f64()).with_label("phase", *name));
            }
        }
        if let Some(status) = self.status {
            out.push(Sample::new(&STATUS_CODE, f64::from(status)));
            out.push(Sample::new(&SSL, if self.final_tls { 1.0 } else { 0.0 }));
        }
        out.push(Sample::new(&REDIRECTS, f64::from(self.redirects)));
        if let Some(size) = self.body_size {
            out.push(Sample::new(&BODY_SIZE, size as f64));
        }
        out.extend(self.expiry.clone());
        out.extend(self.dial.iter().cloned());
        out
    }
}
