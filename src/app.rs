//! The running exporter: the config file, the scheduler and the metric
//! store, and the one operation that ties them together, (re)loading.
//!
//! A reload that fails leaves the running checks untouched and sets
//! `runbook_exporter_config_last_reload_successful` to 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashMap;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::sync::{Mutex, Semaphore};

use crate::config::{self, CheckConfig, Config, ConfigErrors};
use crate::metrics::{self, Store};
use crate::scheduler::Scheduler;
use crate::shard::{stable_hash, Shard};

pub struct App {
    config_path: PathBuf,
    store: Arc<Store>,
    registry: Registry,
    scheduler: Mutex<Scheduler>,
    probes: ArcSwap<ProbeTable>,
    probe_permits: Arc<Semaphore>,
    shard: Shard,
}

/// What `/probe` may run: the modules by name (never a scheduled check, so
/// a check's credentials cannot be sent to a caller's target), the hashes
/// of the scheduled checks' names (to explain a refusal), and the patterns
/// targets must match.
pub struct ProbeTable {
    pub modules: HashMap<String, Arc<CheckConfig>>,
    /// [`stable_hash`] of every check's name in the config (every shard's),
    /// sorted: 8 bytes per check rather than a copy of each name, which
    /// every replica of a sharded fleet would hold for the whole fleet.
    check_hashes: Vec<u64>,
    pub allowed_targets: Vec<regex::Regex>,
}

impl ProbeTable {
    fn from_config(config: &Config) -> Self {
        Self {
            modules: config
                .modules
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect(),
            check_hashes: {
                let mut hashes: Vec<u64> = config
                    .checks
                    .iter()
                    .map(|c| stable_hash(&c.name))
                    .chain(config.other_shards_checks.iter().copied())
                    .collect();
                hashes.sort_unstable();
                hashes
            },
            allowed_targets: config.probe_allowed_targets.clone(),
        }
    }

    /// Whether the config has a scheduled check named `name` (a 64-bit
    /// hash collision could say yes wrongly; only a refusal's wording
    /// depends on it).
    pub fn is_check(&self, name: &str) -> bool {
        self.check_hashes.binary_search(&stable_hash(name)).is_ok()
    }

    /// Whether `target` matches the global `probe.allowed_targets`.
    pub fn allows(&self, target: &str) -> bool {
        self.allowed_targets.is_empty() || self.allowed_targets.iter().any(|re| re.is_match(target))
    }
}

/// Probes allowed in flight at once; more get 503 rather than queueing.
pub const MAX_CONCURRENT_PROBES: usize = 64;

impl App {
    /// Load the config and start every check. The first load must succeed.
    pub async fn start(config_path: PathBuf) -> Result<Arc<App>, ConfigErrors> {
        Self::start_shard(config_path, Shard::default()).await
    }

    /// Like [`App::start`], running only the checks `shard` owns (every
    /// module stays probeable).
    pub async fn start_shard(config_path: PathBuf, shard: Shard) -> Result<Arc<App>, ConfigErrors> {
        let config = load(&config_path, shard).await?;
        let store = Arc::new(Store::default());
        let mut scheduler = Scheduler::new(store.clone());
        scheduler.apply(&config);
        store.config_loaded(true);
        tracing::info!(
            config = %config_path.display(),
            checks = config.defined_checks(),
            scheduled = config.checks.len(),
            shard = shard.index,
            total_shards = shard.total,
            "config loaded, checks scheduled"
        );
        Ok(Arc::new(App {
            config_path,
            registry: metrics::registry(store.clone(), shard),
            store,
            scheduler: Mutex::new(scheduler),
            probes: ArcSwap::from_pointee(ProbeTable::from_config(&config)),
            probe_permits: Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES)),
            shard,
        }))
    }

    /// Re-read the config file and apply it; on error keep the running
    /// config. Returns the number of checks now configured.
    pub async fn reload(&self) -> Result<usize, ConfigErrors> {
        let mut scheduler = self.scheduler.lock().await;
        match load(&self.config_path, self.shard).await {
            Ok(config) => {
                scheduler.apply(&config);
                self.probes
                    .store(Arc::new(ProbeTable::from_config(&config)));
                self.store.config_loaded(true);
                let checks = config.defined_checks();
                tracing::info!(checks, scheduled = config.checks.len(), "config reloaded");
                Ok(checks)
            }
            Err(errors) => {
                self.store.config_loaded(false);
                for e in &errors.0 {
                    tracing::error!(error = %e, "config reload failed; keeping the running config");
                }
                Err(errors)
            }
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The checks and modules `/probe` can run.
    pub fn probes(&self) -> Arc<ProbeTable> {
        self.probes.load_full()
    }

    /// A permit to run one probe, if fewer than [`MAX_CONCURRENT_PROBES`]
    /// are running. The run holds it until it has ended, not its caller.
    pub fn try_probe_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.probe_permits.clone().try_acquire_owned().ok()
    }

    /// Stop every check.
    pub async fn shutdown(&self) {
        self.scheduler.lock().await.shutdown();
    }
}

/// Load the config off the async threads (building checks reads files):
/// the checks `shard` owns, each keeping only what runs, reloads and
/// probes it.
async fn load(path: &Path, shard: Shard) -> Result<Config, ConfigErrors> {
    let path = path.to_path_buf();
    match tokio::task::spawn_blocking(move || config::load_runnable(&path, shard)).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
