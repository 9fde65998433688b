//! A run ends with its owner: 150 `/probe` clients that hang up leave no
//! descriptor and no run behind, and a reload that removes or changes a
//! check stops its run in flight. The tests in this binary run one at a
//! time (a lock), so the process's descriptor count is one test's alone.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{request, wait_until};
use runbook_exporter::app::App;
use runbook_exporter::scheduler::start_offset;

/// Open file descriptors of this process (the exporter runs in it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Serialises the tests of this binary.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_probes_are_stopped_and_release_their_descriptors() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let silent = common::silent_target();
    let (target, open) = (silent.addr, silent.open.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    // A 30 s module timeout: only aborted runs can be gone within 10 s.
    std::fs::write(
        &path,
        "defaults: {interval: 1m, timeout: 30s}\nchecks: []\nmodules:\n  - name: banner\n    \
         kind: tcp\n    address: 127.0.0.1:1\n    expect: '^HELLO'\n",
    )
    .unwrap();
    let app = App::start(path).await.expect("config loads");
    let addr = common::serve_plain(&app).await;
    let baseline = open_fds();

    // 150 clients send a probe each; they hang up only once the cap's 64
    // runs have really started (the others were answered 503).
    let clients: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..150)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(&addr, common::REQUEST_TIMEOUT).unwrap();
                write!(
                    s,
                    "GET /probe?module=banner&target={target} HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                .unwrap();
                s
            })
            .collect()
    })
    .await
    .unwrap();
    let cap = runbook_exporter::app::MAX_CONCURRENT_PROBES;
    wait_until(
        Duration::from_secs(30),
        || {
            silent.accepted.load(Ordering::SeqCst) >= cap
                && app.store().probes_in_flight() == cap as i64
        },
        || {
            format!(
                "{cap} probe runs started; the target saw {} connections, {} runs in flight",
                silent.accepted.load(Ordering::SeqCst),
                app.store().probes_in_flight()
            )
        },
    )
    .await;
    drop(clients);

    wait_until(
        Duration::from_secs(10),
        || {
            open_fds() <= baseline
                && app.store().probes_in_flight() == 0
                && open.load(Ordering::SeqCst) == 0
        },
        || {
            format!(
                "{} descriptors (baseline {baseline}), {} probe runs in flight, \
                 {} connections open at the target",
                open_fds(),
                app.store().probes_in_flight(),
                open.load(Ordering::SeqCst)
            )
        },
    )
    .await;

    // The exporter still answers probes.
    let closed = common::closed_port();
    let path = format!("/probe?module=banner&target={closed}");
    let resp = tokio::task::spawn_blocking(move || request(addr, "GET", &path, &[]))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
}

/// A check name whose first run starts within 300 ms of a 1 m interval.
fn early_name(prefix: &str) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}_{i}"))
        .find(|n| start_offset(n, Duration::from_secs(60)) < Duration::from_millis(300))
        .expect("some name starts early")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_stops_the_runs_of_removed_and_changed_checks() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let silent = common::silent_target();
    let (removed, changed) = (early_name("removed"), early_name("changed"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let check = |name: &str, address: SocketAddr| {
        format!("  - name: {name}\n    kind: tcp\n    address: {address}\n    expect: '^HELLO'\n")
    };
    let head = "defaults: {interval: 1m, timeout: 50s}\nchecks:\n";
    std::fs::write(
        &path,
        format!(
            "{head}{}{}",
            check(&removed, silent.addr),
            check(&changed, silent.addr)
        ),
    )
    .unwrap();
    let app = App::start(path.clone()).await.expect("config loads");
    // Both runs wait on the silent target for up to 50 s.
    wait_until(
        Duration::from_secs(5),
        || silent.open.load(Ordering::SeqCst) == 2,
        || format!("{} connections open", silent.open.load(Ordering::SeqCst)),
    )
    .await;

    // The changed check now probes elsewhere, so the silent target can only
    // lose connections.
    let elsewhere = common::closed_port();
    std::fs::write(&path, format!("{head}{}", check(&changed, elsewhere))).unwrap();
    app.reload().await.expect("reload");
    wait_until(
        Duration::from_secs(5),
        || silent.open.load(Ordering::SeqCst) == 0,
        || {
            format!(
                "{} connections still open at the target after the reload",
                silent.open.load(Ordering::SeqCst)
            )
        },
    )
    .await;
    app.shutdown().await;
}
