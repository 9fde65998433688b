//! The `dns` kind: look up one record type of one name (the guides'
//! `nslookup`), through the system's resolver configuration or directly at a
//! given name server.
//!
//! Every run builds a fresh resolver with caching disabled, so every run
//! really asks: a cached answer would hide an outage for up to a TTL. The
//! resolver is cheap to build; for the system configuration this also picks
//! up edits to `/etc/resolv.conf` and `/etc/hosts`, as the C library does.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
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
use serde::Deserialize;

use super::{
    BuildError, Check, Failure, MetricDesc, MetricKind, Reason, RunContext, RunResult, Sample,
};

/// TTL hickory gives records it did not get from a name server (`/etc/hosts`
/// entries, the built-in `localhost`).
const SYNTHETIC_TTL: u32 = 86_400;

/// How many answers a failure message lists.
const LISTED_ANSWERS: usize = 10;

/// Record types a `dns` check can ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    #[default]
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Srv,
    Ptr,
    Soa,
    Caa,
}

impl DnsRecordType {
    fn record_type(self) -> RecordType {
        match self {
            DnsRecordType::A => RecordType::A,
            DnsRecordType::Aaaa => RecordType::AAAA,
            DnsRecordType::Cname => RecordType::CNAME,
            DnsRecordType::Mx => RecordType::MX,
            DnsRecordType::Txt => RecordType::TXT,
            DnsRecordType::Ns => RecordType::NS,
            DnsRecordType::Srv => RecordType::SRV,
            DnsRecordType::Ptr => RecordType::PTR,
            DnsRecordType::Soa => RecordType::SOA,
            DnsRecordType::Caa => RecordType::CAA,
        }
    }
}

/// How queries travel to the name server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsTransport {
    #[default]
    Udp,
    Tcp,
}

/// Config of a `dns` check.
///
/// ```yaml
/// - name: mail-mx
///   kind: dns
///   query_name: example.com
///   record_type: MX
///   server: 10.0.0.53
///   expect_values: ["10 mail.example.com."]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The name to look up, like `api.example.com`. With `record_type: PTR`
    /// an IP address is accepted too and looked up by its reverse name
    /// (`10.0.0.5` asks for `5.0.0.10.in-addr.arpa.`), as `nslookup 10.0.0.5`
    /// does. Without `server`, a name without a final dot is completed with
    /// the search domains of `/etc/resolv.conf`, as the application's own
    /// lookups are.
    pub query_name: String,

    /// Record type to ask for: `A` (default), `AAAA`, `CNAME`, `MX`, `TXT`,
    /// `NS`, `SRV`, `PTR`, `SOA` or `CAA`.
    #[serde(default)]
    pub record_type: DnsRecordType,

    /// Name server to ask, as `ip`, `ip:port`, `[ipv6]:port` or `host:port`
    /// (port default 53; a host name is resolved with the system resolver on
    /// each run). Each run sends one query to exactly this server: no cache,
    /// no retry, no `/etc/hosts`; the per-query timeout is the check's
    /// `timeout`.
    ///
    /// Without `server`, the lookup goes the way the application's own does:
    /// the name servers, search domains, timeout and attempts of
    /// `/etc/resolv.conf`, and for `A` and `AAAA` the entries of `/etc/hosts`
    /// first (a name listed there is answered from the file, without a
    /// query). Only the asked address family is looked up.
    pub server: Option<String>,

    /// `udp` (default) or `tcp`. With `udp`, a truncated reply is retried
    /// over TCP, as `dig` and the C library do. Without `server`, `tcp` sends
    /// the queries to the system's name servers over TCP only.
    #[serde(default)]
    pub transport: DnsTransport,

    /// Fewest answer records of `record_type` for the run to pass. Default: 1.
    #[serde(default = "default_min_answers")]
    pub min_answers: usize,

    /// Values that must each be among the answers, written as the record data
    /// in zone-file text: `A` `127.0.0.1`; `AAAA` `2001:db8::1` (compared as
    /// addresses, so any spelling works); `CNAME`, `NS`, `PTR` the name with
    /// its final dot, `svc.example.com.`; `MX` `10 mail.example.com.`; `SRV`
    /// `10 5 5060 sip.example.com.` (priority weight port target); `TXT` the
    /// text of the record without quotes, its strings joined: `v=spf1 -all`;
    /// `SOA` `ns1.example.com. hostmaster.example.com. 2024010101 7200 3600
    /// 1209600 300`; `CAA` `0 issue "letsencrypt.org"`. Other than addresses,
    /// the comparison is exact; a failure message lists the answers received.
    #[serde(default)]
    pub expect_values: Vec<String>,

    /// Ask the server to resolve recursively (the RD flag). Set to false to
    /// ask an authoritative server about its own zones only. Default: true.
    #[serde(default = "default_true")]
    pub recursion_desired: bool,
}

fn default_min_answers() -> usize {
    1
}

fn default_true() -> bool {
    true
}

impl super::ProbeSafety for DnsSpec {
    fn credentials(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The configured server; the system's name servers are not listed.
    fn endpoints(&self) -> Vec<super::targets::Endpoint> {
        let Some(server) = &self.server else {
            return Vec::new();
        };
        super::targets::split_host_port(server)
            .map(|(host, port)| super::targets::Endpoint::new(host, port.unwrap_or(53)))
            .into_iter()
            .collect()
    }
}

impl DnsSpec {
    /// Semantic problems, as `(field, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(e) = query_name(&self.query_name, self.record_type) {
            problems.push(("query_name".to_string(), e));
        }
        if let Some(server) = &self.server {
            if let Err(e) = parse_server(server) {
                problems.push(("server".to_string(), e));
            }
        }
        if self.min_answers == 0 {
            problems.push((
                "min_answers".to_string(),
                "must be at least 1: a lookup without answers fails".to_string(),
            ));
        }
        for (i, value) in self.expect_values.iter().enumerate() {
            if let Err(e) = Expected::parse(value, self.record_type) {
                problems.push((format!("expect_values[{i}]"), e));
            }
        }
        problems
    }
}

/// Number of answer records of the asked type.
pub static ANSWERS: MetricDesc = MetricDesc {
    name: "dns_answers",
    help: "Number of answer records of the asked type in the last scheduled run (0 for NXDOMAIN or an empty answer).",
    unit: None,
    kind: MetricKind::Gauge,
};

/// Lowest TTL among the answer records.
pub static ANSWER_TTL_MIN: MetricDesc = MetricDesc {
    name: "dns_answer_ttl_min",
    help: "Lowest TTL among the answer records of the asked type in the last scheduled run; absent when there were none or they came from /etc/hosts.",
    unit: Some(Unit::Seconds),
    kind: MetricKind::Gauge,
};

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 2] = [&ANSWERS, &ANSWER_TTL_MIN];

/// Where the queries go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Server {
    Addr(SocketAddr),
    /// A host name, resolved on each run.
    Host(String, u16),
}

/// One entry of `expect_values`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Ip(IpAddr),
    Text(String),
}

impl Expected {
    fn parse(value: &str, record_type: DnsRecordType) -> Result<Self, String> {
        match record_type {
            DnsRecordType::A => value
                .trim()
                .parse::<std::net::Ipv4Addr>()
                .map(|ip| Expected::Ip(ip.into()))
                .map_err(|_| format!("{value:?} is not an IPv4 address, as A answers are")),
            DnsRecordType::Aaaa => value
                .trim()
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| Expected::Ip(ip.into()))
                .map_err(|_| format!("{value:?} is not an IPv6 address, as AAAA answers are")),
            _ => Ok(Expected::Text(value.to_string())),
        }
    }

    fn matches(&self, answer: &Record) -> bool {
        match self {
            Expected::Ip(ip) => answer.data().ip_addr() == Some(*ip),
            Expected::Text(text) => answer.data().to_string() == *text,
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Ip(ip) => write!(f, "{ip}"),
            Expected::Text(text) => write!(f, "{text:?}"),
        }
    }
}

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

/// The name to ask for; for PTR an IP address becomes its reverse name.
fn query_name(text: &str, record_type: DnsRecordType) -> Result<Name, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".to_string());
    }
    if record_type == DnsRecordType::Ptr {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Name::from(ip));
        }
    }
    Name::from_str(text).map_err(|e| format!("{text:?} is not a valid DNS name: {e}"))
}

/// `ip`, `ip:port`, `[ipv6]`, `[ipv6]:port`, `host` or `host:port`.
fn parse_server(text: &str) -> Result<Server, String> {
    const PORT: u16 = 53;
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Server::Addr(SocketAddr::new(ip, PORT)));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Server::Addr(addr));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if let Ok(ip) = inner.parse::<IpAddr>() {
            return Ok(Server::Addr(SocketAddr::new(ip, PORT)));
        }
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{text:?}: port must be a number from 1 to 65535"))?;
            (host, port)
        }
        None => (text, PORT),
    };
    if host.is_empty() || host.contains(':') || host.contains('[') {
        return Err(format!(
            "{text:?}: write an IP address or host name, with an optional port: 10.0.0.53, 10.0.0.53:5353, [2001:db8::53]:53, ns1.internal"
        ));
    }
    Name::from_str(host).map_err(|e| format!("{text:?}: invalid host name: {e}"))?;
    Ok(Server::Host(host.to_string(), port))
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

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::RData;

    #[test]
    fn parses_servers() {
        let addr = |s: &str| Server::Addr(s.parse().unwrap());
        assert_eq!(parse_server("10.0.0.53").unwrap(), addr("10.0.0.53:53"));
        assert_eq!(
            parse_server("10.0.0.53:5353").unwrap(),
            addr("10.0.0.53:5353")
        );
        assert_eq!(parse_server("::1").unwrap(), addr("[::1]:53"));
        assert_eq!(parse_server("[::1]").unwrap(), addr("[::1]:53"));
        assert_eq!(parse_server("[::1]:5353").unwrap(), addr("[::1]:5353"));
        assert_eq!(
            parse_server("ns1.internal").unwrap(),
            Server::Host("ns1.internal".into(), 53)
        );
        assert_eq!(
            parse_server("ns1.internal:5353").unwrap(),
            Server::Host("ns1.internal".into(), 5353)
        );
        assert!(parse_server("ns1.internal:x").is_err());
        assert!(parse_server("[::1]:").is_err());
        assert!(parse_server(":53").is_err());
    }

    #[test]
    fn ptr_accepts_an_address() {
        let name = query_name("10.0.0.5", DnsRecordType::Ptr).unwrap();
        assert_eq!(name.to_string(), "5.0.0.10.in-addr.arpa.");
        assert!(query_name("", DnsRecordType::A).is_err());
    }

    #[test]
    fn address_values_are_compared_as_addresses() {
        let e = Expected::parse("2001:db8:0::1", DnsRecordType::Aaaa).unwrap();
        let record = Record::from_rdata(
            Name::from_str("x.").unwrap(),
            60,
            RData::AAAA("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().into()),
        );
        assert!(e.matches(&record));
        assert!(Expected::parse("::1", DnsRecordType::A).is_err());
    }

    #[test]
    fn response_codes_print_like_dig() {
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::ServFail), "SERVFAIL");
    }
}
