//! The `clickhouse` kind against the real ClickHouse server started by
//! `scripts/services.sh up clickhouse`.

mod common;

use common::build;

use std::time::Duration;

use runbook_exporter::checks::{Check, Failure, Reason, RunContext, Sample};

fn env(name: &str) -> String {
    common::service_env(name, "clickhouse")
}

fn url() -> String {
    env("RUNBOOK_TEST_CLICKHOUSE_URL")
}

fn user() -> String {
    env("RUNBOOK_TEST_CLICKHOUSE_USER")
}

fn password() -> String {
    env("RUNBOOK_TEST_CLICKHOUSE_PASSWORD")
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    let ctx = RunContext {
        timeout: Duration::from_secs(5),
    };
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx))
        .await
        .expect("run finishes")
}

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.desc.name == name)
        .map(|s| s.value)
}

fn must(samples: &[Sample], name: &str) -> f64 {
    value(samples, name).unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
}

#[tokio::test]
async fn ping_and_query_are_both_measured_with_version_and_start_time() {
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}",
        url(),
        user(),
        password()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    let ping = must(&samples, "clickhouse_ping_duration");
    let query = must(&samples, "clickhouse_query_duration");
    assert!(ping > 0.0 && ping < 5.0, "{ping}");
    assert!(query > 0.0 && query < 5.0, "{query}");
    let version = samples
        .iter()
        .find(|s| s.desc.name == "clickhouse_version_info")
        .expect("a version");
    assert_eq!(version.value, 1.0);
    assert_eq!(version.labels[0].0, "version");
    assert!(
        version.labels[0].1.split('.').count() >= 3,
        "{:?}",
        version.labels
    );
    let started = must(&samples, "clickhouse_start_timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now && started > now - 30.0 * 86400.0,
        "{started}"
    );
    // Not asked for.
    assert_eq!(value(&samples, "clickhouse_replica_max_delay"), None);
    assert_eq!(check.secrets(), [password()]);
}

#[tokio::test]
async fn a_wrong_password_fails_with_reason_auth_although_ping_answers() {
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: not-the-password",
        url(),
        user()
    ));
    let failure = run(check.as_ref()).await.expect_err("wrong password");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    // /ping still answered, and its measurement stays; the query's does not.
    assert!(value(&failure.samples, "clickhouse_ping_duration").is_some());
    assert_eq!(value(&failure.samples, "clickhouse_query_duration"), None);
    assert_eq!(check.secrets(), ["not-the-password"]);

    let unknown = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: nobody-here",
        url()
    ));
    let failure = run(unknown.as_ref()).await.expect_err("unknown user");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
}

#[tokio::test]
async fn the_password_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{}\n", password())).unwrap();
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword_file: {}",
        url(),
        user(),
        file.display()
    ));
    run(check.as_ref()).await.expect("check passes");
}

#[tokio::test]
async fn a_configured_query_runs_and_a_broken_one_fails() {
    let check = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}\n\
         query: SELECT count() FROM system.tables\ndatabase: system\nreplica_delay: true",
        url(),
        user(),
        password()
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert!(must(&samples, "clickhouse_query_duration") > 0.0);
    // Other tests make replicas lag meanwhile (the value is checked in
    // a_replica_that_stopped_fetching_lags_and_catches_up_once_started).
    assert!(must(&samples, "clickhouse_replica_max_delay") >= 0.0);

    let broken = build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}\nquery: SELECT * FROM no_such_table",
        url(),
        user(),
        password()
    ));
    let failure = run(broken.as_ref()).await.expect_err("unknown table");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("no_such_table"),
        "{}",
        failure.message
    );
    assert!(value(&failure.samples, "clickhouse_ping_duration").is_some());
}

#[tokio::test]
async fn nothing_listening_fails_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let check = build(&format!("kind: clickhouse\nurl: http://127.0.0.1:{port}"));
    let failure = run(check.as_ref()).await.expect_err("nothing listens");
    assert_eq!(
        failure.reason,
        Reason::ConnectionRefused,
        "{}",
        failure.message
    );
    assert!(failure.samples.is_empty());
}

#[tokio::test]
async fn the_native_port_instead_of_the_http_one_fails_the_ping() {
    // A common mistake: port 9000 (native protocol) for 8123 (HTTP).
    let native = env("RUNBOOK_TEST_CLICKHOUSE_NATIVE_ADDR");
    let check = build(&format!("kind: clickhouse\nurl: http://{native}"));
    let failure = run(check.as_ref())
        .await
        .expect_err("not the HTTP interface");
    assert_eq!(
        failure.reason,
        Reason::UnexpectedResponse,
        "{}",
        failure.message
    );
    assert!(failure.message.contains("/ping"), "{}", failure.message);
    assert!(failure.message.contains("400"), "{}", failure.message);
}

/// Run `sql` as the read-write test user over HTTP, for setting up.
async fn admin(sql: &str) -> String {
    // reqwest's rustls needs a process-wide crypto provider (the checks
    // install theirs when built; this may run first).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url())
        .basic_auth(user(), Some(password()))
        .body(sql.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {status} {body}");
    body
}

fn readonly_check(extra: &str) -> Box<dyn Check> {
    build(&format!(
        "kind: clickhouse\nurl: {}\nuser: {}\npassword: {}\n{extra}",
        url(),
        env("RUNBOOK_TEST_CLICKHOUSE_RO_USER"),
        env("RUNBOOK_TEST_CLICKHOUSE_RO_PASSWORD")
    ))
}

fn labelled(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.desc.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .collect()
}

#[tokio::test]
async fn a_readonly_user_works_and_reads_the_replication_views() {
    // The server refuses any setting from this user (readonly = 1).
    let check = readonly_check("replica_delay: true\nreplicas: true\nmutations: true");
    for _ in 0..3 {
        let samples = match run(check.as_ref()).await {
            Ok(samples) => samples,
            Err(f) => panic!("readonly user: {} {}", f.reason, f.message),
        };
        must(&samples, "clickhouse_query_duration");
        // Other tests create replicated tables meanwhile: the readonly
        // user reads the views, one row per table up to the cap
        // (a_replica_that_stopped_fetching_lags_... checks the values).
        let replicas = must(&samples, "clickhouse_replicas");
        assert!(must(&samples, "clickhouse_replicas_readonly") <= replicas);
        assert!(must(&samples, "clickhouse_replica_max_delay") >= 0.0);
        let dropped = labelled(&samples, "clickhouse_dropped_rows", &[("part", "replicas")]);
        let rows = labelled(&samples, "clickhouse_replica_queue_size", &[]).len();
        assert_eq!(dropped.len(), 1, "{samples:#?}");
        assert_eq!(rows as f64 + dropped[0], replicas, "{samples:#?}");
    }
    // What the readonly user may not do still fails, as a permission error.
    let writer = readonly_check("query: CREATE TABLE runbook_ro_probe (x UInt8) ENGINE = Memory");
    let failure = run(writer.as_ref()).await.expect_err("readonly");
    assert_eq!(failure.reason, Reason::Auth, "{}", failure.message);
    assert!(failure.message.contains("164"), "{}", failure.message);
}

#[tokio::test]
async fn mutations_that_cannot_finish_are_counted_as_stuck_per_table_with_a_cap() {
    let db = "runbook_t_ch_stuck";
    admin(&format!("DROP DATABASE IF EXISTS {db}")).await;
    admin(&format!("CREATE DATABASE {db}")).await;
    for t in ["a", "b"] {
        admin(&format!(
            "CREATE TABLE {db}.{t} (x UInt32) ENGINE = MergeTree ORDER BY x"
        ))
        .await;
        admin(&format!("INSERT INTO {db}.{t} VALUES (1), (2)")).await;
        // throwIf fails on the row x = 1: the mutation is retried forever.
        admin(&format!(
            "ALTER TABLE {db}.{t} DELETE WHERE throwIf(x = 1) = 0"
        ))
        .await;
    }
    let check = readonly_check("mutations: true\nmutation_stuck_after: 1s\nmax_tables: 1");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = run(check.as_ref()).await.expect("check passes");
        let ours: Vec<f64> = ["a", "b"]
            .iter()
            .flat_map(|t| {
                labelled(
                    &samples,
                    "clickhouse_table_stuck_mutations",
                    &[("database", db), ("table", t)],
                )
            })
            .collect();
        if must(&samples, "clickhouse_stuck_mutations") >= 2.0 && ours == [1.0] {
            break samples;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 30 s waiting for two stuck mutations: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        labelled(&samples, "clickhouse_table_stuck_mutations", &[]).len(),
        1
    );
    assert!(
        labelled(
            &samples,
            "clickhouse_dropped_rows",
            &[("part", "mutations")]
        )[0] >= 1.0
    );
    assert!(must(&samples, "clickhouse_oldest_stuck_mutation_age") >= 1.0);
    admin(&format!("DROP DATABASE {db}")).await;
}

#[tokio::test]
async fn https_with_the_servers_ca_passes_and_without_it_fails_tls() {
    let https = env("RUNBOOK_TEST_CLICKHOUSE_HTTPS_URL");
    let check = build(&format!(
        "kind: clickhouse\nurl: {https}\nuser: {}\npassword: {}\ntls: {{ca_file: {}}}",
        user(),
        password(),
        env("RUNBOOK_TEST_CLICKHOUSE_CA_FILE")
    ));
    match run(check.as_ref()).await {
        Ok(samples) => assert!(must(&samples, "clickhouse_query_duration") > 0.0),
        Err(f) => panic!("https: {} {}", f.reason, f.message),
    }
    let untrusted = build(&format!("kind: clickhouse\nurl: {https}\nuser: {}", user()));
    let failure = run(untrusted.as_ref())
        .await
        .expect_err("the CA is not trusted");
    assert_eq!(failure.reason, Reason::Tls, "{}", failure.message);
}

/// A database of replicated tables for one test, dropped (with the tables'
/// ZooKeeper metadata) when the guard goes, even on panic.
struct ReplicatedDb(String);

impl Drop for ReplicatedDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.0);
        // The test's runtime may be unwinding: drop from a runtime of our own.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup")
                .block_on(admin(&sql))
        })
        .join();
        if done.is_err() {
            eprintln!("could not drop {}", self.0);
        }
    }
}

/// `(queue_size, absolute_delay)` of one table, and the server's
/// `(count(), countIf(is_readonly))`, from system.replicas.
async fn replica_truth(db: &str, table: &str) -> ((f64, f64), (f64, f64)) {
    let row = admin(&format!(
        "SELECT queue_size, absolute_delay FROM system.replicas \
         WHERE database = '{db}' AND table = '{table}' FORMAT TabSeparated"
    ))
    .await;
    let totals =
        admin("SELECT count(), countIf(is_readonly) FROM system.replicas FORMAT TabSeparated")
            .await;
    let pair = |s: &str| -> (f64, f64) {
        let v: Vec<f64> = s
            .split_whitespace()
            .map(|x| x.parse().unwrap_or_else(|_| panic!("a number: {s:?}")))
            .collect();
        assert_eq!(v.len(), 2, "two numbers in {s:?}");
        (v[0], v[1])
    };
    (pair(&row), pair(&totals))
}

/// The check's `(queue_size, absolute_delay)` for one table, and its
/// `(replicas, replicas_readonly)`.
fn replica_exported(samples: &[Sample], db: &str, table: &str) -> ((f64, f64), (f64, f64)) {
    let one = |name: &str| {
        let v = labelled(samples, name, &[("database", db), ("table", table)]);
        assert_eq!(v.len(), 1, "one {name} for {db}.{table} in {samples:#?}");
        v[0]
    };
    (
        (
            one("clickhouse_replica_queue_size"),
            one("clickhouse_replica_absolute_delay"),
        ),
        (
            must(samples, "clickhouse_replicas"),
            must(samples, "clickhouse_replicas_readonly"),
        ),
    )
}

/// The replication tests one at a time: one of them stops ZooKeeper.
static REPLICATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn unique_db(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("runbook_t_ch_{what}_{}_{nanos}", std::process::id())
}

#[tokio::test]
async fn a_replica_that_stopped_fetching_lags_and_catches_up_once_started() {
    let _one_at_a_time = REPLICATION.lock().await;
    let db = unique_db("repl");
    admin(&format!("CREATE DATABASE {db}")).await;
    let _guard = ReplicatedDb(db.clone());
    // Two replicas of one table on one server: `lag` fetches nothing.
    for (t, replica) in [("src", "r1"), ("lag", "r2")] {
        admin(&format!(
            "CREATE TABLE {db}.{t} (x UInt32) ENGINE = ReplicatedMergeTree(\
             '/clickhouse/tables/{{shard}}/{db}/t', '{replica}') ORDER BY x"
        ))
        .await;
    }
    admin(&format!("SYSTEM STOP FETCHES {db}.lag")).await;
    for i in 0..3 {
        admin(&format!("INSERT INTO {db}.src VALUES ({i})")).await;
    }
    let check = readonly_check("replicas: true\nreplica_delay: true\nmax_tables: 100");

    // The lagging replica queues the three parts and falls behind: the
    // check's numbers lie between what system.replicas says before and
    // after the run (the delay grows by the second).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let before = replica_truth(&db, "lag").await;
        let samples = run(check.as_ref()).await.expect("check passes");
        let after = replica_truth(&db, "lag").await;
        let got = replica_exported(&samples, &db, "lag");
        let lagging = |t: &((f64, f64), (f64, f64))| t.0 .0 == 3.0 && t.0 .1 >= 1.0;
        if lagging(&before) && lagging(&after) && before.1 == after.1 {
            assert_eq!(got.0 .0, 3.0, "queue size of {db}.lag");
            assert!(
                (before.0 .1..=after.0 .1).contains(&got.0 .1),
                "delay {} of {db}.lag between {} and {}",
                got.0 .1,
                before.0 .1,
                after.0 .1
            );
            assert_eq!(got.1, before.1, "replicas and read-only replicas");
            // The worst delay of the server is at least this table's.
            assert!(must(&samples, "clickhouse_replica_max_delay") >= before.0 .1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60 s waiting for {db}.lag to queue 3 parts and lag: {before:?} {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The source replica is current.
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(replica_exported(&samples, &db, "src").0, (0.0, 0.0));
    assert!(must(&samples, "clickhouse_replicas") >= 2.0);

    // Fetching again, it catches up: queue and delay go back to 0.
    admin(&format!("SYSTEM START FETCHES {db}.lag")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let samples = run(check.as_ref()).await.expect("check passes");
        let got = replica_exported(&samples, &db, "lag");
        if got.0 == (0.0, 0.0) {
            assert_eq!(replica_truth(&db, "lag").await.0, (0.0, 0.0));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60 s waiting for {db}.lag to catch up: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        admin(&format!("SELECT count() FROM {db}.lag")).await.trim(),
        "3"
    );
}

/// The test ZooKeeper stopped until this is dropped: `scripts/services.sh
/// up clickhouse` starts it again even when the test panics.
struct ZooKeeperDown;

impl ZooKeeperDown {
    fn stop() -> Self {
        let pid = std::fs::read_to_string(env("RUNBOOK_TEST_CLICKHOUSE_ZOOKEEPER_PID_FILE"))
            .expect("the ZooKeeper pid file");
        let status = std::process::Command::new("kill")
            .arg(pid.trim())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill ZooKeeper {}", pid.trim());
        ZooKeeperDown
    }
}

impl Drop for ZooKeeperDown {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
        // Bounded: coreutils' timeout ends the script after two minutes.
        let status = std::process::Command::new("timeout")
            .args(["--kill-after=5s", "120s"])
            .arg(script)
            .args(["up", "clickhouse"])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("scripts/services.sh up clickhouse failed: {status:?}");
        }
    }
}

async fn table_readonly(db: &str) -> String {
    admin(&format!(
        "SELECT is_readonly FROM system.replicas WHERE database = '{db}' FORMAT TabSeparated"
    ))
    .await
    .trim()
    .to_string()
}

#[tokio::test]
async fn replicas_that_lost_zookeeper_are_counted_read_only_until_it_is_back() {
    let _one_at_a_time = REPLICATION.lock().await;
    let db = unique_db("ro");
    admin(&format!("CREATE DATABASE {db}")).await;
    let _guard = ReplicatedDb(db.clone());
    admin(&format!(
        "CREATE TABLE {db}.t (x UInt32) ENGINE = ReplicatedMergeTree(\
         '/clickhouse/tables/{{shard}}/{db}/t', 'r1') ORDER BY x"
    ))
    .await;
    let check = readonly_check("replicas: true\nmax_tables: 100");
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(
        replica_exported(&samples, &db, "t").1,
        replica_truth(&db, "t").await.1
    );

    // Without ZooKeeper the replica turns read-only; the check still runs
    // (system.replicas is read from memory) and counts it.
    let zookeeper = ZooKeeperDown::stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let before = replica_truth(&db, "t").await.1;
        let samples = run(check.as_ref())
            .await
            .expect("check passes without ZooKeeper");
        let after = replica_truth(&db, "t").await.1;
        let got = replica_exported(&samples, &db, "t").1;
        if table_readonly(&db).await == "1" && before == after && before.1 >= 1.0 {
            assert_eq!(got, before, "replicas and read-only replicas");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60 s waiting for {db}.t to turn read-only: {before:?} {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // ZooKeeper back: the replica reconnects and the count returns to 0.
    drop(zookeeper);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let samples = run(check.as_ref()).await.expect("check passes");
        let got = replica_exported(&samples, &db, "t").1;
        if got.1 == 0.0 {
            assert_eq!(table_readonly(&db).await, "0");
            assert_eq!(replica_truth(&db, "t").await.1, got);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60 s waiting for the replicas to leave read-only mode: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
