//! The token alerts of the `jwt` kind: the check failing, a token close to
//! its `exp` (warning at 7 days, critical at 1 day), and a signature that
//! does not verify under the configured key. Their runbooks hold the
//! guides' token rotation procedure and clock-skew check.

use super::{Alert, Class, Fixture, Group, Priority, Runbook, Team};

/// Decoding a token by hand, as the guides do.
macro_rules! decode_token {
    () => {
        "```sh\n# the claims (never paste the token itself into a ticket or chat)\ncut -d. -f2 < /var/run/secrets/api/token | tr '_-' '/+' | base64 -d 2>/dev/null | jq '{iss, aud, iat, nbf, exp}'\ndate -u -d @EXP   # exp as a date\n```"
    };
}

/// The guides' rotation procedure.
macro_rules! rotate_token {
    () => {
        "1. Issue a new token from the issuer (its admin API or console), with the same `iss`, `aud` and scopes.\n2. Store it where the service and the check read it:\n\n   ```sh\n   kubectl -n NAMESPACE create secret generic api-token --from-file=token=./new-token --dry-run=client -o yaml | kubectl apply -f -\n   ```\n3. Mounted Secrets are refreshed within a minute; a service that reads the token only at start needs `kubectl -n NAMESPACE rollout restart deployment/NAME`.\n4. The check re-reads the file on its next run: its status page entry turns green and `runbook_jwt_expiry_timestamp_seconds` jumps to the new `exp`.\n5. Revoke the old token at the issuer once nothing uses it."
    };
}

/// The guides' clock-skew check.
macro_rules! clock_skew {
    () => {
        "Check for clock skew: a token is judged against the local clock, so a node whose clock is off sees valid tokens as expired or not yet valid.\n\n```sh\ndate -u +%s                                          # this host\ncurl -sI https://ISSUER | grep -i '^date:'           # the issuer's clock\ntimedatectl status; chronyc tracking                 # NTP sync and offset\n```\nAn offset of more than a few seconds is the fault: fix NTP on the node before touching the token."
    };
}

pub(super) const ALERTS: &[Alert] = &[
    Alert {
        name: "RunbookJwtCheckFailing",
        group: Group::Checks,
        // "Authentication failures" are P1 in the guides.
        priority: Priority::P1,
        team: None,
        class: Class::CheckDown,
        expr: check_down_expr!("jwt"),
        summary: "A JWT check is failing.",
        description: "Check {{ $labels.check }} (jwt) on {{ $labels.instance }} failed {{ $value | humanizePercentage }} of the time over the last %W% (or at every run since its last success). The reason (auth: expired, not yet valid, bad signature, wrong issuer or audience; protocol: malformed; internal: unreadable file) is on the status page.",
        explain: "`runbook_check_up{kind=\"jwt\"}` failing for the failure ratio over the window, or for `min_runs` intervals; kept while the exporter is unreachable",
        runbook: Runbook {
            meaning: "The token the check reads is unusable: expired, not yet valid, badly signed, from the wrong issuer or audience, malformed, or unreadable (the file, the token URL or the key server).",
            impact: "A service presenting this token is refused by the API it calls, or a service verifying tokens with this key refuses its clients.",
            diagnose: concat!("1. Read the check's last error on the exporter's status page (`/`); it names the file or URL, never the token.\n2. Decode the token's claims:\n\n", decode_token!(), "\n3. ", clock_skew!()),
            fix: concat!("- `expired`: rotate the token:\n\n", rotate_token!(), "\n- `bad signature`: the service and the issuer disagree on the key; see RunbookJwtSignatureInvalid.\n- `internal`: the file is missing or unreadable; check the Secret's mount and the exporter's permissions."),
            escalate: "Escalate to the token's owner (the integration or the identity team) if a new token cannot be issued within the hour.",
        },
        test: Fixture {
            firing: &[
                ("runbook_check_up{%L%,check=\"token\",kind=\"jwt\"}", "0x30"),
                ("runbook_check_last_run_timestamp_seconds{%L%,check=\"token\",kind=\"jwt\"}", "0+60x30"),
            ],
            delay: 2,
            labels: "%L%,check=\"token\",kind=\"jwt\"",
            value: "100%",
            quiet: &[
                ("runbook_check_up{%L%,check=\"token\",kind=\"jwt\"}", "1x30"),
                ("runbook_check_last_run_timestamp_seconds{%L%,check=\"token\",kind=\"jwt\"}", "0+60x30"),
            ],
        },
    },
    Alert {
        name: "RunbookJwtExpiring",
        group: Group::Tls,
        priority: Priority::P2,
        team: None,
        class: Class::Other,
        expr: "(runbook_jwt_expiry_timestamp_seconds{%E%} - time()) / 86400 < %T%",
        summary: "A token expires within days.",
        description: "The token read by check {{ $labels.check }} expires in {{ $value | printf \"%.1f\" }} days.",
        explain: "days until the token's `exp` below the threshold",
        runbook: Runbook {
            meaning: "A token the check reads (a service-account token, an API token in a Secret, an integration token) expires within the threshold.",
            impact: "None yet; after `exp`, every request with the token is refused.",
            diagnose: concat!(decode_token!(), "\nFind who issued it (`iss`) and what uses it (the check's labels and the Secret's consumers)."),
            fix: rotate_token!(),
            escalate: "Ticket to the token's owner now; it pages at 1 day (RunbookJwtExpiring (critical)).",
        },
        test: Fixture {
            firing: &[("runbook_jwt_expiry_timestamp_seconds{%L%,check=\"token\"}", "432000x30")],
            delay: 0,
            labels: "%L%,check=\"token\"",
            value: "5.0",
            quiet: &[("runbook_jwt_expiry_timestamp_seconds{%L%,check=\"token\"}", "8640000x30")],
        },
    },
    Alert {
        name: "RunbookJwtExpiring",
        group: Group::Tls,
        priority: Priority::P1,
        team: None,
        class: Class::Other,
        expr: "(runbook_jwt_expiry_timestamp_seconds{%E%} - time()) / 86400 < %T%",
        summary: "A token expires within a day.",
        description: "The token read by check {{ $labels.check }} expires in {{ $value | printf \"%.1f\" }} days.",
        explain: "days until the token's `exp` below the critical threshold",
        runbook: Runbook {
            meaning: "A token the check reads expires within a day.",
            impact: "When it expires, the service using it loses access: an outage of whatever it calls.",
            diagnose: concat!(decode_token!(), "\n", clock_skew!()),
            fix: rotate_token!(),
            escalate: "P0: page the token's owner; if the issuer is down, page its team.",
        },
        test: Fixture {
            firing: &[("runbook_jwt_expiry_timestamp_seconds{%L%,check=\"token\"}", "43200x30")],
            delay: 0,
            labels: "%L%,check=\"token\"",
            value: "0.5",
            quiet: &[("runbook_jwt_expiry_timestamp_seconds{%L%,check=\"token\"}", "8640000x30")],
        },
    },
    Alert {
        name: "RunbookJwtSignatureInvalid",
        group: Group::Tls,
        // An authentication failure (P1); a key the service does not
        // expect is the security team's to judge.
        priority: Priority::P1,
        team: Some(Team::Security),
        class: Class::Symptom,
        expr: "runbook_jwt_signature_valid{%E%} == 0",
        summary: "A token's signature does not verify.",
        description: "The token read by check {{ $labels.check }} does not verify under the configured key; runbook_jwt_signature_valid = {{ $value }}.",
        explain: "`runbook_jwt_signature_valid == 0`",
        runbook: Runbook {
            meaning: "The token is not signed with the key the check verifies against: the guides' \"is the signing secret the one the service uses\" check failed. Either the token came from another issuer or environment, or the key was rotated on one side only.",
            impact: "Services verifying with this key reject the token: logins or API calls fail with 401.",
            diagnose: concat!(
                "1. Compare the token's header with the key:\n\n   ```sh\n   cut -d. -f1 < /var/run/secrets/api/token | tr '_-' '/+' | base64 -d 2>/dev/null | jq '{alg, kid}'\n   curl -s https://ISSUER/.well-known/jwks.json | jq '.keys[] | {kid, kty, alg}'\n   ```\n",
                "2. With an HMAC secret: compare checksums, never the secrets: `sha256sum /etc/secrets/jwt` in the exporter and in the service's pod.\n",
                "3. The check's message says whether the kid is missing from the JWKS or the `alg` does not fit the key."
            ),
            fix: concat!(
                "- Key rotated at the issuer only: roll the new secret or key out to the services (and the check's `verify`), keeping the old key published until old tokens expire.\n",
                "- Token from the wrong environment: replace it with one from the right issuer:\n\n",
                rotate_token!()
            ),
            escalate: "P0 when users cannot log in: page the identity team.",
        },
        test: Fixture {
            firing: &[("runbook_jwt_signature_valid{%L%,check=\"token\"}", "0x30")],
            delay: 0,
            labels: "%L%,check=\"token\"",
            value: "0",
            quiet: &[("runbook_jwt_signature_valid{%L%,check=\"token\"}", "1x30")],
        },
    },
];
