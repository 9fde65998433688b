//! The `dns` kind: look up one record type of one name (the guides'
//! `nslookup`), through the system's resolver configuration or directly at a
//! given name server.
//!
//! Every run builds a fresh resolver with caching disabled, so every run
//! really asks: a cached answer would hide an outage for up to a TTL. The
//! resolver is cheap to build; for the system configuration this also picks
//! up edits to `/etc/resolv.conf` and `/etc/hosts`, as the C library does.

mod spec;

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Record, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Hosts, Name, ResolveError, TokioResolver};
use prometheus_client::registry::Unit;

use self::spec::{parse_server, query_name, Expected, Server};
use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};

pub use self::spec::{DnsRecordType, DnsSpec, DnsTransport};

/// TTL hickory gives records it did not get from a name server (`/etc/hosts`
/// entries, the built-in `localhost`).
const SYNTHETIC_TTL: u32 = 86_400;

/// How many answers a failure message lists.
const LISTED_ANSWERS: usize = 10;

/// Number of answer records of the asked type.
pub static ANSWERS: MetricDesc = MetricDesc::gauge(
    "dns_answers",
    None,
    "Number of answer records of the asked type in the last scheduled run (0 for NXDOMAIN or an empty answer).",
);

/// Lowest TTL among the answer records.
pub static ANSWER_TTL_MIN: MetricDesc = MetricDesc::gauge(
    "dns_answer_ttl_min",
    Some(Unit::Seconds),
    "Lowest TTL among the answer records of the asked type in the last scheduled run; absent when there were none or they came from /etc/hosts.",
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 2] = [&ANSWERS, &ANSWER_TTL_MIN];

/// A built `dns` check.
pub struct DnsCheck {
    name: Name,
    record_type: RecordType,
    server: Option<Server>,
    transport: DnsTransport,
    min_answers: usize,
    expect_values: Vec<Expected>,
    recursion_desired: bool,
    /// `name TYPE`, for messages.
    query_text: String,
}

impl DnsCheck {
    pub fn new(spec: &DnsSpec) -> Result<Self, BuildError> {
        let name = query_name(&spec.query_name, spec.record_type)
            .map_err(|e| BuildError::new("query_name", e))?;
        let server = spec
            .server
            .as_deref()
            .map(parse_server)
            .transpose()
            .map_err(|e| BuildError::new("server", e))?;
        if spec.min_answers == 0 {
            return Err(BuildError::new("min_answers", "must be at least 1"));
        }
        let expect_values = spec
            .expect_values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Expected::parse(v, spec.record_type)
                    .map_err(|e| BuildError::new(format!("expect_values[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let record_type = spec.record_type.record_type();
        Ok(Self {
            query_text: format!("{} {record_type}", spec.query_name.trim()),
            name,
            record_type,
            server,
            transport: spec.transport,
            min_answers: spec.min_answers,
            expect_values,
            recursion_desired: spec.recursion_desired,
        })
    }

    /// A resolver asking exactly `addr`, without cache, retry or hosts file.
    fn server_resolver(&self, addr: SocketAddr, timeout: Duration) -> TokioResolver {
        let mut servers = Vec::new();
        if self.transport == DnsTransport::Udp {
            servers.push(NameServerConfig::new(addr, Protocol::Udp));
        }
        // With udp, only used when the UDP reply is truncated.
        servers.push(NameServerConfig::new(addr, Protocol::Tcp));
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);

        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        // hickory counts retries: 0 means the one query only.
        opts.attempts = 0;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.recursion_desired = self.recursion_desired;
        opts.num_concurrent_reqs = 1;
        opts.try_tcp_on_error = false;
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build()
    }

    /// A resolver from `/etc/resolv.conf`, without cache.
    fn system_resolver(&self) -> Result<TokioResolver, Failure> {
        let (config, mut opts) =
            hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                Failure::new(
                    Reason::Dns,
                    format!("cannot use the system resolver configuration (/etc/resolv.conf): {e}"),
                )
            })?;
        let config = match self.transport {
            DnsTransport::Udp => config,
            DnsTransport::Tcp => {
                let tcp: Vec<NameServerConfig> = config
                    .name_servers()
                    .iter()
                    .filter(|ns| ns.protocol == Protocol::Tcp)
                    .cloned()
                    .collect();
                ResolverConfig::from_parts(config.domain().cloned(), config.search().to_vec(), tcp)
            }
        };
        opts.cache_size = 0;
        opts.recursion_desired = self.recursion_desired;
        opts.ip_strategy = match self.record_type {
            RecordType::AAAA => LookupIpStrategy::Ipv6Only,
            _ => LookupIpStrategy::Ipv4Only,
        };
        Ok(
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build(),
        )
    }

    async fn probe(&self, ctx: &RunContext) -> RunResult {
        let (result, from_system) = match &self.server {
            Some(server) => {
                let addr = match server {
                    Server::Addr(addr) => *addr,
                    Server::Host(host, port) => resolve_server(host, *port).await?,
                };
                let resolver = self.server_resolver(addr, ctx.timeout);
                let result = resolver.lookup(self.name.clone(), self.record_type).await;
                (result, false)
            }
            None => {
                let resolver = self.system_resolver()?;
                let result = if self.record_type.is_ip_addr() {
                    // The path the application's own lookups take: hosts file first.
                    resolver
                        .lookup_ip(self.name.clone())
                        .await
                        .map(|ips| ips.as_lookup().clone())
                } else {
                    resolver.lookup(self.name.clone(), self.record_type).await
                };
                (result, true)
            }
        };
        let lookup = result.map_err(|e| self.failure(&e))?;

        let answers: Vec<&Record> = lookup
            .records()
            .iter()
            .filter(|r| r.record_type() == self.record_type)
            .collect();
        let mut samples = vec![Sample::new(&ANSWERS, answers.len() as f64)];
        // /etc/hosts answers A, AAAA and PTR on the system path.
        let synthetic = from_system && from_hosts(&answers);
        if !synthetic {
            if let Some(ttl) = answers.iter().map(|r| r.ttl()).min() {
                samples.push(Sample::new(&ANSWER_TTL_MIN, f64::from(ttl)));
            }
        }

        if answers.is_empty() {
            return Err(Failure::new(
                Reason::Dns,
                format!(
                    "{}: no {} records in the answer",
                    self.query_text, self.record_type
                ),
            )
            .with_samples(samples));
        }
        if answers.len() < self.min_answers {
            return Err(Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "{}: {} answers, expected at least {}: {}",
                    self.query_text,
                    answers.len(),
                    self.min_answers,
                    list_answers(&answers)
                ),
            )
            .with_samples(samples));
        }
        let missing: Vec<String> = self
            .expect_values
            .iter()
            .filter(|e| !answers.iter().any(|a| e.matches(a)))
            .map(|e| e.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "{}: expected {} not among the answers: {}",
                    self.query_text,
                    missing.join(", "),
                    list_answers(&answers)
                ),
            )
            .with_samples(samples));
        }
        Ok(samples)
    }

    /// Classify a resolver error.
    fn failure(&self, err: &ResolveError) -> Failure {
        let q = &self.query_text;
        let Some(proto) = err.proto() else {
            return Failure::new(Reason::Dns, format!("{q}: {err}"));
        };
        match proto.kind() {
            ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                let code = rcode_name(*response_code);
                match *response_code {
                    ResponseCode::NXDomain => {
                        Failure::new(Reason::Dns, format!("{q}: {code}: the name does not exist"))
                            .with_samples(vec![Sample::new(&ANSWERS, 0.0)])
                    }
                    ResponseCode::NoError => Failure::new(
                        Reason::Dns,
                        format!(
                            "{q}: {code} with no {} records: the name exists without records of this type",
                            self.record_type
                        ),
                    )
                    .with_samples(vec![Sample::new(&ANSWERS, 0.0)]),
                    _ => Failure::new(
                        Reason::Dns,
                        format!("{q}: the name server answered {code}"),
                    ),
                }
            }
            ProtoErrorKind::Timeout => Failure::new(
                Reason::Timeout,
                format!("{q}: no reply from the name server in time"),
            ),
            ProtoErrorKind::Io(e) => Failure::new(Reason::from_io(e), format!("{q}: {e}")),
            ProtoErrorKind::RequestRefused => Failure::new(
                Reason::Dns,
                format!("{q}: the name server answered REFUSED"),
            ),
            ProtoErrorKind::NoConnections => Failure::new(
                Reason::Network,
                format!("{q}: no name server could be reached"),
            ),
            _ => Failure::new(Reason::Dns, format!("{q}: {err}")),
        }
    }
}

impl Check for DnsCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx))
    }
}

/// The mnemonic of a response code, as `dig` prints it.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_string(),
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::NXDomain => "NXDOMAIN".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        ResponseCode::YXDomain => "YXDOMAIN".to_string(),
        ResponseCode::YXRRSet => "YXRRSET".to_string(),
        ResponseCode::NXRRSet => "NXRRSET".to_string(),
        ResponseCode::NotAuth => "NOTAUTH".to_string(),
        ResponseCode::NotZone => "NOTZONE".to_string(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// Whether the answers came from `/etc/hosts` or the built-in `localhost`
/// rather than from a name server: hickory gives those a made-up TTL of one
/// day, so they are recognised by that TTL plus a matching hosts entry.
fn from_hosts(answers: &[&Record]) -> bool {
    if answers.is_empty() || answers.iter().any(|r| r.ttl() != SYNTHETIC_TTL) {
        return false;
    }
    if answers.iter().all(|r| r.name().is_localhost()) {
        return true;
    }
    let Ok(hosts) = Hosts::from_system() else {
        return false;
    };
    answers.iter().all(|r| {
        hosts
            .lookup_static_host(&Query::query(r.name().clone(), r.record_type()))
            .is_some_and(|l| l.records().iter().any(|h| h.data() == r.data()))
    })
}

/// The answers, for a failure message.
fn list_answers(answers: &[&Record]) -> String {
    let mut shown: Vec<String> = answers
        .iter()
        .take(LISTED_ANSWERS)
        .map(|r| format!("{:?}", r.data().to_string()))
        .collect();
    if answers.len() > LISTED_ANSWERS {
        shown.push(format!("and {} more", answers.len() - LISTED_ANSWERS));
    }
    format!("got [{}]", shown.join(", "))
}

/// Resolve a `server` given as a host name, with the system resolver.
async fn resolve_server(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    let mut addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| {
        Failure::new(
            Reason::Dns,
            format!("cannot resolve the name server {host}: {e}"),
        )
    })?;
    addrs.next().ok_or_else(|| {
        Failure::new(
            Reason::Dns,
            format!("cannot resolve the name server {host}: no addresses"),
        )
    })
}

crate::checks::kind!(DnsSpec => DnsCheck, "dns", probe "server");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_print_like_dig() {
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
    }
}
