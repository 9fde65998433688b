//! Sharding across replicas, the kube-state-metrics way: every replica
//! loads the same config, and each check runs on exactly one of
//! `total_shards` replicas, chosen by a stable hash of its name. No
//! coordination between replicas is needed: Prometheus scrapes them all,
//! and a StatefulSet gives each pod its ordinal (`--shard auto`).
//!
//! The hash is XXH3-64 of the name's bytes (the `xxhash-rust` crate), fixed
//! by its specification, so replicas running different releases during a
//! rolling update still agree on who owns a check; it mixes well even for
//! names that differ in one character (`api_1`, `api_2`), so shares and
//! start offsets spread evenly.

/// Which share of the checks this replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

impl Default for Shard {
    /// One replica runs everything.
    fn default() -> Self {
        Shard { index: 0, total: 1 }
    }
}

impl Shard {
    /// A shard from the command line: `index` is a number below `total`,
    /// or `auto` for the ordinal at the end of `hostname` (a StatefulSet
    /// pod `runbook-exporter-2` is shard 2). The error names the parameter.
    pub fn parse(index: &str, total: u32, hostname: Option<&str>) -> Result<Shard, String> {
        if total == 0 {
            return Err("--total-shards: must be at least 1".into());
        }
        let index = if index == "auto" {
            ordinal(hostname).ok_or_else(|| {
                format!(
                    "--shard auto: the host name {:?} does not end in -N (a StatefulSet pod's \
                     ordinal); set --shard to a number instead",
                    hostname.unwrap_or("")
                )
            })?
        } else {
            index
                .parse()
                .map_err(|_| format!("--shard: {index:?} is neither a number nor \"auto\""))?
        };
        if index >= total {
            return Err(format!(
                "--shard: {index} is not below --total-shards {total} (shards count from 0)"
            ));
        }
        Ok(Shard { index, total })
    }

    /// Whether this replica runs the check called `name`.
    pub fn owns(&self, name: &str) -> bool {
        self.total <= 1 || owner(name, self.total) == self.index
    }
}

/// The shard that owns `name` among `total`.
fn owner(name: &str, total: u32) -> u32 {
    (stable_hash(name) % u64::from(total)) as u32
}

/// XXH3-64 of `name`'s bytes: the same in every release.
pub fn stable_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// The number after the last `-` of a host name.
fn ordinal(hostname: Option<&str>) -> Option<u32> {
    hostname?.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_owned_by_exactly_one_shard_and_the_split_is_even() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, total: 3 }).collect();
        let mut counts = [0usize; 3];
        for n in 0..30_000 {
            let name = format!("check_{n}");
            let owners: Vec<u32> = shards
                .iter()
                .filter(|s| s.owns(&name))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners.len(), 1, "{name}: {owners:?}");
            counts[owners[0] as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn the_hash_is_xxh3_and_never_changes() {
        // XXH3-64 of the empty input is 0x2d06800538d394c2 (the reference
        // implementation's value).
        assert_eq!(stable_hash(""), 0x2d06_8005_38d3_94c2);
        assert_eq!(owner("", 7), (0x2d06_8005_38d3_94c2_u64 % 7) as u32);
    }

    #[test]
    fn shards_come_from_numbers_or_a_statefulset_ordinal() {
        assert_eq!(Shard::parse("1", 3, None), Ok(Shard { index: 1, total: 3 }));
        assert_eq!(
            Shard::parse("auto", 3, Some("runbook-exporter-2")),
            Ok(Shard { index: 2, total: 3 })
        );
        let e = Shard::parse("auto", 3, Some("laptop")).unwrap_err();
        assert!(e.starts_with("--shard auto:"), "{e}");
        let e = Shard::parse("3", 3, None).unwrap_err();
        assert!(e.contains("not below --total-shards 3"), "{e}");
        let e = Shard::parse("x", 3, None).unwrap_err();
        assert!(e.starts_with("--shard:"), "{e}");
        assert!(Shard::parse("0", 0, None).is_err());
        assert!(Shard::default().owns("anything"));
    }
}
