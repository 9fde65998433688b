//! The `dns` kind against a tiny authoritative name server started by the
//! tests on 127.0.0.1 (UDP and TCP), and `localhost` through /etc/hosts.

mod common;

use common::{build, ctx};

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use runbook_exporter::checks::{Check, CheckSpec, Failure, Reason, Sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

enum Reply {
    Answer(Vec<Record>),
    Code(ResponseCode),
    Silent,
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::from(Ipv4Addr::from(ip))))
}

/// The zone the test server is authoritative for.
fn zone(query: &Query) -> Reply {
    let owner = query.name().to_ascii().to_ascii_lowercase();
    match (owner.as_str(), query.query_type()) {
        ("app.test.", RecordType::A) => Reply::Answer(vec![a("app.test.", 300, [127, 0, 0, 10])]),
        ("two.test.", RecordType::A) => Reply::Answer(vec![
            a("two.test.", 60, [127, 0, 0, 11]),
            a("two.test.", 30, [127, 0, 0, 12]),
        ]),
        ("test.", RecordType::MX) => Reply::Answer(vec![Record::from_rdata(
            name("test."),
            3600,
            RData::MX(MX::new(10, name("mail.test."))),
        )]),
        ("test.", RecordType::TXT) => Reply::Answer(vec![Record::from_rdata(
            name("test."),
            120,
            RData::TXT(TXT::new(vec!["v=spf1 -all".to_string()])),
        )]),
        ("broken.test.", _) => Reply::Code(ResponseCode::ServFail),
        ("silent.test.", _) => Reply::Silent,
        // A name that exists, without records of other types.
        ("app.test.", _) | ("two.test.", _) | ("test.", _) => Reply::Answer(Vec::new()),
        _ => Reply::Code(ResponseCode::NXDomain),
    }
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    queries: AtomicUsize,
    last_rd: AtomicBool,
}

/// The wire reply to one query, or `None` to stay silent.
fn respond(packet: &[u8], seen: &Seen) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    seen.queries.fetch_add(1, Ordering::SeqCst);
    seen.last_rd
        .store(request.recursion_desired(), Ordering::SeqCst);
    let query = request.queries().first()?.clone();
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired());
    match zone(&query) {
        Reply::Answer(records) => {
            response.add_answers(records);
        }
        Reply::Code(code) => {
            response.set_response_code(code);
        }
        Reply::Silent => return None,
    }
    response.add_query(query);
    response.to_vec().ok()
}

/// Start the UDP and TCP server; returns their addresses.
async fn start_server() -> (SocketAddr, SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());

    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let udp_seen = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            if let Some(reply) = respond(&buf[..n], &udp_seen) {
                let _ = udp.send_to(&reply, peer).await;
            }
        }
    });

    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let tcp_seen = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tcp.accept().await.unwrap();
            let seen = tcp_seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(len) = stream.read_u16().await else {
                        return;
                    };
                    let mut packet = vec![0u8; usize::from(len)];
                    if stream.read_exact(&mut packet).await.is_err() {
                        return;
                    }
                    match respond(&packet, &seen) {
                        Some(reply) => {
                            let _ = stream.write_u16(reply.len() as u16).await;
                            let _ = stream.write_all(&reply).await;
                        }
                        // Hold the connection, say nothing.
                        None => std::future::pending::<()>().await,
                    }
                }
            });
        }
    });

    (udp_addr, tcp_addr, seen)
}

async fn run(check: &dyn Check) -> Result<Vec<Sample>, Failure> {
    tokio::time::timeout(Duration::from_secs(30), check.run(&ctx()))
        .await
        .expect("run finishes")
}

fn value(samples: &[Sample], metric: &str) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.desc.name == metric)
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{metric} reported twice");
    found.first().copied()
}

#[tokio::test]
async fn a_record_passes() {
    let (udp, _, seen) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: app.test\nserver: {udp}\nexpect_values: [127.0.0.10]"
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(value(&samples, "dns_answers"), Some(1.0));
    assert_eq!(value(&samples, "dns_answer_ttl_min"), Some(300.0));
    assert!(
        seen.last_rd.load(Ordering::SeqCst),
        "recursion desired by default"
    );

    // No cache: the second run asks again.
    run(check.as_ref()).await.expect("check passes again");
    assert_eq!(seen.queries.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn ttl_is_the_lowest_and_all_answers_count() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: two.test.\nrecord_type: A\nserver: {udp}\nmin_answers: 2\nexpect_values: [127.0.0.11, 127.0.0.12]"
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(value(&samples, "dns_answers"), Some(2.0));
    assert_eq!(value(&samples, "dns_answer_ttl_min"), Some(30.0));
}

#[tokio::test]
async fn mx_and_txt_values_are_zone_file_text() {
    let (udp, _, _) = start_server().await;
    let mx = build(&format!(
        "kind: dns\nquery_name: test.\nrecord_type: MX\nserver: {udp}\nexpect_values: ['10 mail.test.']"
    ));
    run(mx.as_ref()).await.expect("MX passes");
    let txt = build(&format!(
        "kind: dns\nquery_name: test.\nrecord_type: TXT\nserver: {udp}\nexpect_values: ['v=spf1 -all']"
    ));
    run(txt.as_ref()).await.expect("TXT passes");
}

#[tokio::test]
async fn tcp_transport() {
    let (_, tcp, seen) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: app.test\nserver: {tcp}\ntransport: tcp\nrecursion_desired: false"
    ));
    let samples = run(check.as_ref()).await.expect("check passes");
    assert_eq!(value(&samples, "dns_answers"), Some(1.0));
    assert!(!seen.last_rd.load(Ordering::SeqCst), "RD flag cleared");
}

#[tokio::test]
async fn nxdomain_is_a_dns_failure() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!("kind: dns\nquery_name: nope.test\nserver: {udp}"));
    let failure = run(check.as_ref()).await.expect_err("name does not exist");
    assert_eq!(failure.reason, Reason::Dns);
    assert!(failure.message.contains("NXDOMAIN"), "{}", failure.message);
    assert_eq!(value(&failure.samples, "dns_answers"), Some(0.0));
}

#[tokio::test]
async fn servfail_is_a_dns_failure() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: broken.test\nserver: {udp}"
    ));
    let failure = run(check.as_ref()).await.expect_err("server fails");
    assert_eq!(failure.reason, Reason::Dns);
    assert!(failure.message.contains("SERVFAIL"), "{}", failure.message);
}

#[tokio::test]
async fn no_records_of_the_type_is_a_dns_failure() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: app.test\nrecord_type: AAAA\nserver: {udp}"
    ));
    let failure = run(check.as_ref()).await.expect_err("no AAAA");
    assert_eq!(failure.reason, Reason::Dns);
    assert!(failure.message.contains("NOERROR"), "{}", failure.message);
    assert_eq!(value(&failure.samples, "dns_answers"), Some(0.0));
}

#[tokio::test]
async fn too_few_answers() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: app.test\nserver: {udp}\nmin_answers: 2"
    ));
    let failure = run(check.as_ref()).await.expect_err("one answer");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("127.0.0.10"),
        "{}",
        failure.message
    );
    assert_eq!(value(&failure.samples, "dns_answers"), Some(1.0));
}

#[tokio::test]
async fn a_missing_expected_value() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: app.test\nserver: {udp}\nexpect_values: [127.0.0.10, 127.0.0.99]"
    ));
    let failure = run(check.as_ref())
        .await
        .expect_err("127.0.0.99 is missing");
    assert_eq!(failure.reason, Reason::UnexpectedResponse);
    assert!(
        failure.message.contains("127.0.0.99"),
        "{}",
        failure.message
    );
    assert!(
        !failure.message.contains("expected 127.0.0.10"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (udp, _, _) = start_server().await;
    let check = build(&format!(
        "kind: dns\nquery_name: silent.test\nserver: {udp}"
    ));
    // Through the scheduler's run, as in production: a 300 ms timeout must
    // end the run with reason timeout, well before the 5 s bound.
    let record = tokio::time::timeout(
        Duration::from_secs(5),
        runbook_exporter::scheduler::run_once(Arc::from(check), Duration::from_millis(300)),
    )
    .await
    .expect("the run against a silent server ended within 5 s");
    match record.result {
        Err(failure) => assert_eq!(failure.reason, Reason::Timeout, "{}", failure.message),
        Ok(samples) => panic!("a silent server passed: {samples:?}"),
    }
}

#[tokio::test]
async fn localhost_through_the_hosts_file() {
    // No server: the system path, where /etc/hosts answers for localhost
    // without any query leaving the host.
    let check = build("kind: dns\nquery_name: localhost\nexpect_values: [127.0.0.1]");
    let samples = run(check.as_ref()).await.expect("localhost resolves");
    assert!(value(&samples, "dns_answers").unwrap() >= 1.0);
    // Not from a name server: no TTL.
    assert_eq!(value(&samples, "dns_answer_ttl_min"), None);
}

#[test]
fn validation_reports_problems() {
    let spec: CheckSpec = serde_saphyr::from_str(
        "kind: dns\nquery_name: ''\nserver: 'ns1.internal:port'\nmin_answers: 0\nexpect_values: ['not-an-ip']",
    )
    .unwrap();
    let fields: Vec<String> = spec.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["query_name", "server", "min_answers", "expect_values[0]"]
    );

    let bad_type =
        serde_saphyr::from_str::<CheckSpec>("kind: dns\nquery_name: a.test\nrecord_type: ANY");
    assert!(bad_type.is_err());
    let bad_transport =
        serde_saphyr::from_str::<CheckSpec>("kind: dns\nquery_name: a.test\ntransport: quic");
    assert!(bad_transport.is_err());
}
