//! The `dns` kind's configuration: [`DnsSpec`] as written in YAML, its
//! validation, and the parsed forms of its fields that [`DnsCheck`] runs
//! with: the name to ask for, the server and the expected values.
//!
//! [`DnsCheck`]: super::DnsCheck

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_resolver::proto::rr::{Record, RecordType};
use hickory_resolver::Name;
use serde::Deserialize;

use crate::checks::shared::targets::{self, ProbeSafety};

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
    /// The hickory record type.
    pub(super) fn record_type(self) -> RecordType {
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

impl ProbeSafety for DnsSpec {
    fn credentials(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The configured server; the system's name servers are not listed.
    fn endpoints(&self) -> Vec<targets::Endpoint> {
        let Some(server) = &self.server else {
            return Vec::new();
        };
        targets::split_host_port(server)
            .map(|(host, port)| targets::Endpoint::new(host, port.unwrap_or(53)))
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

/// Where the queries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Server {
    Addr(SocketAddr),
    /// A host name, resolved on each run.
    Host(String, u16),
}

/// One entry of `expect_values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expected {
    Ip(IpAddr),
    Text(String),
}

impl Expected {
    /// An entry as written, checked against the record type asked for.
    pub(super) fn parse(value: &str, record_type: DnsRecordType) -> Result<Self, String> {
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

    /// Whether `answer` carries this value.
    pub(super) fn matches(&self, answer: &Record) -> bool {
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

/// The name to ask for; for PTR an IP address becomes its reverse name.
pub(super) fn query_name(text: &str, record_type: DnsRecordType) -> Result<Name, String> {
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
pub(super) fn parse_server(text: &str) -> Result<Server, String> {
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
}
