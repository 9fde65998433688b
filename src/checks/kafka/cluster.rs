//! The brokers a `kafka` check talks to: one connection slot per bootstrap
//! address and per broker the metadata named, and the one way to send a
//! request to a broker within a deadline.
//!
//! Requests to one broker take turns on its connection. A request takes the
//! connection out of its slot and puts it back only once the whole answer
//! was read: when a deadline fires or the scheduler cancels the run, the
//! connection is dropped (closed) and the next request dials again, so no
//! run ever sees another run's half-read answer. Nothing here blocks a
//! thread or outlives the future that uses it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::protocol::Request;

use super::conn::{Conn, Dialer};
use crate::checks::{Failure, Reason};

/// Where one broker (or bootstrap address) is, and its connection.
pub(super) struct Slot {
    pub(super) host: String,
    pub(super) port: u16,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl Slot {
    fn new(host: String, port: u16) -> Arc<Self> {
        Arc::new(Self {
            host,
            port,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether a connection is open and idle now (a cheap first choice).
    fn is_connected(&self) -> bool {
        self.conn.try_lock().is_ok_and(|c| c.is_some())
    }
}

/// A broker the check knows: its slot, a second one for the reachability
/// probe (so a probe never waits behind a slow data request), and when a
/// metadata answer last named it.
struct Known {
    slot: Arc<Slot>,
    probe: Arc<Slot>,
    last_seen: Instant,
}

/// Brokers a metadata answer stopped naming are kept (and asked, and
/// reported down) for this long, so a dead broker shows `broker_up 0`
/// rather than vanishing.
pub(super) const FORGET_BROKER_AFTER: Duration = Duration::from_secs(3600);

/// The brokers of one check.
pub(super) struct Cluster {
    dialer: Dialer,
    bootstrap: Vec<Arc<Slot>>,
    brokers: Mutex<BTreeMap<i32, Known>>,
}

/// Where a request goes.
#[derive(Clone)]
pub(super) enum Target {
    Broker(i32),
    /// The broker's own connection for the reachability probe.
    Probe(i32),
    Slot(Arc<Slot>),
}

impl Cluster {
    pub(super) fn new(dialer: Dialer, bootstrap: &[(String, u16)]) -> Self {
        Self {
            dialer,
            bootstrap: bootstrap
                .iter()
                .map(|(h, p)| Slot::new(h.clone(), *p))
                .collect(),
            brokers: Mutex::new(BTreeMap::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Known>> {
        self.brokers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the brokers of a metadata answer; a broker whose address
    /// changed gets a new slot. Brokers not named for
    /// [`FORGET_BROKER_AFTER`] are forgotten.
    pub(super) fn update(&self, brokers: &[(i32, String, u16)], now: Instant) {
        let mut known = self.known();
        for (id, host, port) in brokers {
            match known.get_mut(id) {
                Some(k) if k.slot.host == *host && k.slot.port == *port => k.last_seen = now,
                _ => {
                    known.insert(
                        *id,
                        Known {
                            slot: Slot::new(host.clone(), *port),
                            probe: Slot::new(host.clone(), *port),
                            last_seen: now,
                        },
                    );
                }
            }
        }
        known.retain(|_, k| now.saturating_duration_since(k.last_seen) < FORGET_BROKER_AFTER);
    }

    /// The ids of the brokers the check knows, in order.
    pub(super) fn broker_ids(&self) -> Vec<i32> {
        self.known().keys().copied().collect()
    }

    /// Where to ask for metadata, best first: known brokers with an open
    /// connection, the bootstrap addresses, then the other known brokers.
    pub(super) fn metadata_targets(&self) -> Vec<Target> {
        let known = self.known();
        let mut out: Vec<Target> = known
            .values()
            .filter(|k| k.slot.is_connected())
            .map(|k| Target::Slot(k.slot.clone()))
            .collect();
        out.extend(self.bootstrap.iter().cloned().map(Target::Slot));
        out.extend(
            known
                .values()
                .filter(|k| !k.slot.is_connected())
                .map(|k| Target::Slot(k.slot.clone())),
        );
        out
    }

    fn slot(&self, target: &Target) -> Result<Arc<Slot>, Failure> {
        match target {
            Target::Slot(s) => Ok(s.clone()),
            Target::Broker(id) | Target::Probe(id) => self
                .known()
                .get(id)
                .map(|k| match target {
                    Target::Probe(_) => k.probe.clone(),
                    _ => k.slot.clone(),
                })
                .ok_or_else(|| {
                    Failure::new(
                        Reason::UnexpectedResponse,
                        format!("broker {id} is not in the metadata"),
                    )
                }),
        }
    }

    /// Send `request` (at `preferred` version, or the broker's highest if
    /// lower, at least `min`) and read the answer, all before `deadline`.
    pub(super) async fn call<R: Request>(
        &self,
        target: &Target,
        request: &R,
        preferred: i16,
        min: i16,
        deadline: Instant,
    ) -> Result<R::Response, Failure> {
        let slot = self.slot(target)?;
        let name = match target {
            Target::Broker(id) | Target::Probe(id) => {
                format!("broker {id} ({}:{})", slot.host, slot.port)
            }
            Target::Slot(s) => format!("{}:{}", s.host, s.port),
        };
        let exchange = async {
            let mut guard = slot.conn.lock().await;
            let mut conn = match guard.take() {
                Some(c) => c,
                None => self.dialer.open(&slot.host, slot.port).await?,
            };
            let version = conn.version::<R>(preferred, min);
            let version = match version {
                Ok(v) => v,
                Err(e) => {
                    *guard = Some(conn);
                    return Err(e);
                }
            };
            let answer = conn.send(request, version).await?;
            *guard = Some(conn);
            Ok(answer)
        };
        let budget = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(f)) => Err(Failure::new(f.reason, format!("{name}: {}", f.message))),
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!(
                    "{name}: no answer to API key {} within {} ms",
                    R::KEY,
                    budget.as_millis()
                ),
            )),
        }
    }
}
