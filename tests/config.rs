//! Config loading: the example config, interpolation, defaults and
//! overrides, and a table of invalid configs with their exact error text.

use std::path::Path;

use runbook_exporter::config::{self, ConfigErrors};
use runbook_exporter::shard::Shard;

fn env(name: &str) -> Option<String> {
    match name {
        "DB_HOST" => Some("db.internal".into()),
        "DB_PASSWORD" => Some("hunter22".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<config::Config, ConfigErrors> {
    config::parse("test.yaml", text, &env)
}

fn errors(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!(
            "expected errors, got a config with {} checks",
            c.checks.len()
        ),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_example_config_loads_with_an_empty_environment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let config = config::load_with_env(&path, &|_| None).unwrap();
    let names: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "exporter_health",
            "exporter_metrics",
            "exporter_port",
            "localhost_dns",
            "postgres_port",
            "redis_ping",
            "clickhouse_ping",
            "postgres_primary",
            "cache",
            "analytics",
            "api_pods",
            "s3_bucket",
            "kafka_lag",
            "api_token"
        ]
    );
    // Every kind registered so far is shown in the example.
    for kind in runbook_exporter::checks::KINDS {
        assert!(
            config.checks.iter().any(|c| c.kind() == *kind),
            "no {kind} check"
        );
    }
}

#[test]
fn defaults_apply_and_checks_override_them() {
    let config = parse(
        "defaults:\n  interval: 30s\n  timeout: 3s\n  labels: {team: research, tier: gold}\n\
         max_concurrent_runs: 8\n\
         checks:\n\
         \x20 - name: a\n    kind: tcp\n    address: ${DB_HOST}:5432\n\
         \x20 - name: b\n    kind: tcp\n    address: ${OTHER_HOST:-127.0.0.1}:6379\n    interval: 10s\n    timeout: 500ms\n    labels: {team: core}\n",
    )
    .unwrap();
    assert_eq!(config.max_concurrent_runs, 8);
    let a = &config.checks[0];
    assert_eq!((a.interval.as_secs(), a.timeout.as_secs()), (30, 3));
    assert_eq!(
        a.labels,
        [
            ("team".into(), "research".into()),
            ("tier".into(), "gold".into())
        ]
    );
    assert!(format!("{:?}", a.spec).contains("db.internal:5432"));
    let b = &config.checks[1];
    assert_eq!(
        (b.interval.as_millis(), b.timeout.as_millis()),
        (10_000, 500)
    );
    assert_eq!(
        b.labels,
        [
            ("team".into(), "core".into()),
            ("tier".into(), "gold".into())
        ]
    );
    assert!(format!("{:?}", b.spec).contains("127.0.0.1:6379"));
}

#[test]
fn dollar_dollar_is_a_literal_dollar() {
    let config = parse(
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    send: \"$${HOME}\"\n",
    )
    .unwrap();
    assert!(format!("{:?}", config.checks[0].spec).contains("${HOME}"));
}

/// Each invalid config and the exact text `validate` prints for it
/// (`{KINDS}` stands for the list of registered kinds).
const INVALID: &[(&str, &str, &str)] = &[
    (
        "unset variable",
        "checks:\n  - name: a\n    kind: tcp\n    address: ${NOT_SET}:5432\n",
        "test.yaml:4:14: environment variable NOT_SET is not set (use ${NOT_SET:-default} to give a default)",
    ),
    (
        "yaml syntax",
        "checks:\n  - name: a\n    kind: tcp\n   address: x\n",
        "test.yaml:4:4: while parsing a block collection, did not find expected '-' indicator",
    ),
    (
        "duplicate key",
        "checks: []\nchecks: []\n",
        "test.yaml:2:1: duplicate mapping key: checks",
    ),
    (
        "unknown top-level field",
        "chekcs: []\n",
        "test.yaml:1:1: chekcs: unknown field `chekcs`, expected one of `defaults`, `max_concurrent_runs`, `checks`, `modules`, `probe`",
    ),
    (
        "missing checks",
        "defaults: {interval: 10s}\n",
        "test.yaml:1:1: missing field `checks`",
    ),
    (
        "unknown field in defaults",
        "defaults: {intervl: 10s}\nchecks: []\n",
        "test.yaml:1:12: defaults.intervl: unknown field `intervl`, expected one of `interval`, `timeout`, `labels`",
    ),
    (
        "default timeout not below interval",
        "defaults: {interval: 5s, timeout: 5s}\nchecks: []\n",
        "test.yaml:1:35: defaults.timeout: timeout (5s) must be less than interval (5s)",
    ),
    (
        "zero concurrency",
        "max_concurrent_runs: 0\nchecks: []\n",
        "test.yaml:1:22: max_concurrent_runs: must be at least 1",
    ),
    (
        "unknown field in a check",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    intervall: 10s\n",
        "test.yaml:5:5: checks[0].intervall: unknown field `intervall`, expected one of `name`, `kind`, `interval`, `timeout`, `labels`, `address`, `tls`, `tls_config`, `send`, `expect`, `max_read_bytes`, `ip_protocol`, `connect_timeout`, `proxy_url`, `no_proxy`",
    ),
    (
        "unknown kind",
        "checks:\n  - name: a\n    kind: ftp\n",
        "test.yaml:3:11: checks[0].kind: unknown kind \"ftp\": expected one of {KINDS}",
    ),
    (
        "missing kind",
        "checks:\n  - name: a\n    address: 127.0.0.1:1\n",
        "test.yaml:2:5: checks[0]: missing field `kind` (one of {KINDS})",
    ),
    (
        "missing name",
        "checks:\n  - kind: tcp\n    address: 127.0.0.1:1\n",
        "test.yaml:2:5: checks[0]: missing field `name`",
    ),
    (
        "name not label-safe",
        "checks:\n  - name: api-health\n    kind: tcp\n    address: 127.0.0.1:1\n",
        "test.yaml:2:11: checks[0].name: invalid check name \"api-health\": use letters, digits and underscores, not starting with a digit",
    ),
    (
        "duplicate names",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:2\n",
        "test.yaml:5:11: checks[1].name: duplicate check name \"a\" (first used at line 2)",
    ),
    (
        "timeout not below interval",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    interval: 2s\n    timeout: 2s\n",
        "test.yaml:6:14: checks[0].timeout: timeout (2s) must be less than interval (2s)",
    ),
    (
        "short interval under the default timeout",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    interval: 1s\n",
        "test.yaml:5:15: checks[0].interval: timeout (5s) must be less than interval (1s)",
    ),
    (
        "duration without unit",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    timeout: 5\n",
        "test.yaml:5:14: checks[0].timeout: invalid duration 5: a unit is required, like 5s or 5ms",
    ),
    (
        "duration garbage",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    timeout: soon\n",
        "test.yaml:5:14: checks[0].timeout: invalid duration \"soon\": write a number with a unit, like 500ms, 2s or 1m",
    ),
    (
        "reserved label",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    labels: {kind: x}\n",
        "test.yaml:5:14: checks[0].labels.kind: label name \"kind\" is reserved (the exporter or Prometheus sets it)",
    ),
    (
        "invalid label name",
        "defaults:\n  labels: {\"team-name\": x}\nchecks: []\n",
        "test.yaml:2:12: defaults.labels.team-name: invalid label name \"team-name\": use letters, digits and underscores, not starting with a digit or __",
    ),
    (
        "check is not a mapping",
        "checks:\n  - just a string\n",
        "test.yaml:2:5: checks[0]: expected a mapping with name, kind and the kind's fields",
    ),
    (
        "wrong type in a kind's field",
        "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    max_redirects: many\n",
        "test.yaml:5:20: checks[0].max_redirects: invalid type: string \"many\", expected u32",
    ),
    (
        "invalid field in a nested block",
        "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    tls: {ca_fil: x}\n",
        "test.yaml:5:11: checks[0].tls.ca_fil: unknown field `ca_fil`, expected one of `ca_file`, `cert_file`, `key_file`, `server_name`, `insecure_skip_verify`, `accept_ca_leaf`",
    ),
    (
        "missing CA file",
        "checks:\n  - name: a\n    kind: http\n    url: https://127.0.0.1/\n    tls: {ca_file: /nonexistent/ca.pem}\n",
        "test.yaml:5:20: checks[0].tls.ca_file: cannot read /nonexistent/ca.pem: I/O error: No such file or directory (os error 2)",
    ),
    (
        "a module named like a check",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\nmodules:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:2\n",
        "test.yaml:6:11: modules[0].name: duplicate check name \"a\" (first used at line 2)",
    ),
    (
        "invalid probe target pattern",
        "probe:\n  allowed_targets: ['(']\nchecks: []\n",
        "test.yaml:2:21: probe.allowed_targets[0]: invalid regex \"(\": unclosed group",
    ),
    (
        "several problems at once, in file order",
        "checks:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n    timeout: 1\n  - name: b\n    kind: nope\n",
        "test.yaml:5:14: checks[0].timeout: invalid duration 1: a unit is required, like 1s or 1ms\n\
         test.yaml:7:11: checks[1].kind: unknown kind \"nope\": expected one of {KINDS}",
    ),
];

#[test]
fn invalid_configs_give_exact_errors() {
    let mut mismatches = Vec::new();
    let kinds = runbook_exporter::checks::KINDS.join(", ");
    for (name, text, expected) in INVALID {
        let expected = &expected.replace("{KINDS}", &kinds);
        let got = errors(text);
        if got != *expected {
            mismatches.push(format!(
                "{name}:\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn errors_never_echo_values_from_the_environment() {
    let text = errors(
        "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    max_redirects: ${DB_PASSWORD}\n",
    );
    assert!(!text.contains("hunter22"), "{text}");
    assert!(text.contains("${DB_PASSWORD}"), "{text}");
}

#[test]
fn a_missing_file_is_reported_with_its_name() {
    let err = config::load(Path::new("/nonexistent/runbook.yaml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/nonexistent/runbook.yaml:0:0: cannot read config file: No such file or directory (os error 2)"
    );
}

/// `text` loaded as the server loads it, for `shard`, with `env`.
fn load_runnable(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    shard: Shard,
) -> Result<config::Config, ConfigErrors> {
    config::parse_with("test.yaml", text, env, config::Keep::Runnable(shard))
}

fn runnable(text: &str) -> config::Config {
    load_runnable(text, &env, Shard::default()).unwrap()
}

#[test]
fn a_runnable_load_keeps_no_spec_and_still_tells_every_changed_setting_apart() {
    let base =
        "checks:\n  - {name: a, kind: tcp, address: \"127.0.0.1:9\", send: \"PING\\r\\n\"}\n";
    let first = runnable(base);
    assert!(first.checks[0].spec.is_none());
    assert_eq!(first.checks[0].kind(), "tcp");
    let same = |text: &str| first.checks[0].same_definition(&runnable(text).checks[0]);

    assert!(same(base), "an unchanged check");
    assert!(
        same("checks:\n  # reordered, in block style\n  - send: \"PING\\r\\n\"\n    address: 127.0.0.1:9\n    kind: tcp\n    name: a\n"),
        "the same fields in another order and style"
    );
    for changed in [
        "checks:\n  - {name: a, kind: tcp, address: \"127.0.0.1:10\", send: \"PING\\r\\n\"}\n",
        "checks:\n  - {name: a, kind: tcp, address: \"127.0.0.1:9\", send: \"PONG\\r\\n\"}\n",
        "checks:\n  - {name: a, kind: tcp, address: \"127.0.0.1:9\"}\n",
        "checks:\n  - {name: a, kind: tcp, address: \"127.0.0.1:9\", send: \"PING\\r\\n\", max_read_bytes: 10}\n",
        "checks:\n  - {name: a, kind: tcp, address: \"127.0.0.1:9\", send: \"PING\\r\\n\", interval: 7s}\n",
        "checks:\n  - {name: a, kind: http, url: \"http://127.0.0.1:9/\"}\n",
    ] {
        assert!(!same(changed), "not the same definition: {changed}");
    }
}

#[test]
fn a_runnable_load_sees_a_changed_environment_value() {
    let text = "checks:\n  - {name: a, kind: tcp, address: \"${DB_HOST}:5432\"}\n";
    let load = |host: &'static str| {
        let env = move |name: &str| (name == "DB_HOST").then(|| host.to_string());
        load_runnable(text, &env, Shard::default()).unwrap()
    };
    let first = load("db1.internal");
    assert!(first.checks[0].same_definition(&load("db1.internal").checks[0]));
    assert!(!first.checks[0].same_definition(&load("db2.internal").checks[0]));
}

#[test]
fn each_shard_keeps_only_its_checks_yet_every_shard_refuses_one_that_cannot_be_built() {
    let shard_load = |text: &str, index: u32| load_runnable(text, &env, Shard { index, total: 3 });
    let mut text = String::from("checks:\n");
    for i in 0..30 {
        text.push_str(&format!(
            "  - {{name: c{i}, kind: tcp, address: \"127.0.0.1:9\"}}\n"
        ));
    }
    let mut kept = Vec::new();
    for index in 0..3 {
        let shard = Shard { index, total: 3 };
        let loaded = shard_load(&text, index).unwrap();
        assert_eq!(loaded.checks.len() + loaded.other_shards_checks.len(), 30);
        assert!(loaded.checks.iter().all(|c| shard.owns(&c.name)));
        kept.extend(loaded.checks.iter().map(|c| c.name.clone()));
    }
    kept.sort();
    let mut all: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
    all.sort();
    assert_eq!(kept, all, "every check kept by exactly one shard");

    // Valid as written, but its CA file cannot be read: only the build
    // finds that, and the check is one shard's.
    text.push_str("  - {name: bad, kind: tcp, address: \"127.0.0.1:9\", tls: true, tls_config: {ca_file: /nonexistent/ca.pem}}\n");
    for index in 0..3 {
        let errors = shard_load(&text, index).unwrap_err().to_string();
        assert!(
            errors.contains("checks[30].tls_config.ca_file"),
            "shard {index}: {errors}"
        );
    }
}
