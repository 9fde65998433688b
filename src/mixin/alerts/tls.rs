//! The TLS alerts: certificates close to expiry.

use super::{Alert, Class, Fixture, Group, Priority, Runbook};

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "RunbookTlsCertificateExpiring",
        group: Group::Tls,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "(runbook_tls_earliest_cert_expiry_timestamp_seconds{%E%} - time()) / 86400 < %T%",
        summary: "A TLS certificate expires soon.",
        description: "The certificate chain presented to check {{ $labels.check }} expires in {{ $value | printf \"%.1f\" }} days.",
        explain: "days until the earliest `notAfter` of the chain below the threshold",
        runbook: Runbook {
            meaning: "A certificate the target presents expires within the threshold.",
            impact: "None yet; after expiry, clients refuse the connection.",
            diagnose: "```sh\nopenssl s_client -connect HOST:443 -servername HOST </dev/null 2>/dev/null | openssl x509 -noout -subject -issuer -enddate\nkubectl get certificates -A   # cert-manager\n```",
            fix: "Renew the certificate; with cert-manager, look at why renewal failed (`kubectl describe certificate`, the ACME challenge).",
            escalate: "Escalate to the certificate's owner now; it turns critical at the critical threshold.",
        },
        test: Fixture {
            firing: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "864000x30")],
            delay: 0,
            labels: "%L%,check=\"web\"",
            value: "10.0",
            quiet: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "8640000x30")],
        },
    },
    Alert {
        name: "RunbookTlsCertificateExpiring",
        group: Group::Tls,
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "(runbook_tls_earliest_cert_expiry_timestamp_seconds{%E%} - time()) / 86400 < %T%",
        summary: "A TLS certificate expires within days.",
        description: "The certificate chain presented to check {{ $labels.check }} expires in {{ $value | printf \"%.1f\" }} days.",
        explain: "days until the earliest `notAfter` of the chain below the critical threshold",
        runbook: Runbook {
            meaning: "A certificate the target presents expires within days.",
            impact: "When it expires, every client that verifies certificates fails to connect: an outage.",
            diagnose: "As for RunbookTlsCertificateExpiring.",
            fix: "Renew and deploy the certificate now; restart or reload the server that caches it.",
            escalate: "P0: page the owner of the endpoint.",
        },
        test: Fixture {
            firing: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "86400x30")],
            delay: 0,
            labels: "%L%,check=\"web\"",
            value: "1.0",
            quiet: &[("runbook_tls_earliest_cert_expiry_timestamp_seconds{%L%,check=\"web\"}", "2592000x30")],
        },
    },
];
