//! SASL for the `kafka` kind: PLAIN (RFC 4616) and SCRAM-SHA-256/512
//! (RFC 5802, RFC 7677) on the client side.
//!
//! No maintained crate covers SCRAM-SHA-512 (see ARCHITECTURE.md), so the
//! SCRAM exchange is written here from `ring`'s HMAC, PBKDF2 and digests,
//! the same primitives rustls already uses: a salted password, the client
//! proof, and the check of the server's signature, which proves the broker
//! knows the credential too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

/// Highest PBKDF2 iteration count accepted from a broker; bounds the CPU a
/// hostile broker can make a run spend.
const MAX_ITERATIONS: u32 = 100_000;

/// The configured mechanism and credentials.
#[derive(Clone)]
pub(super) struct Sasl {
    mechanism: Mechanism,
    username: String,
    password: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    Plain,
    Scram256,
    Scram512,
}

/// What to do after a broker's message.
pub(super) enum SaslStep {
    Send(Vec<u8>),
    Done,
}

/// One authentication exchange in progress.
pub(super) struct Exchange<'a> {
    sasl: &'a Sasl,
    nonce: String,
    state: State,
}

enum State {
    Start,
    /// Sent the client-first message; for SCRAM.
    SentFirst,
    /// Sent the client-final message; the server signature expected.
    SentFinal(Vec<u8>),
    Finished,
}

impl Sasl {
    /// `mechanism` is one of `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`
    /// (validated by the spec).
    pub(super) fn new(mechanism: &str, username: &str, password: &str) -> Option<Self> {
        let mechanism = match mechanism {
            "PLAIN" => Mechanism::Plain,
            "SCRAM-SHA-256" => Mechanism::Scram256,
            "SCRAM-SHA-512" => Mechanism::Scram512,
            _ => return None,
        };
        Some(Self {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    pub(super) fn mechanism(&self) -> &'static str {
        match self.mechanism {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram256 => "SCRAM-SHA-256",
            Mechanism::Scram512 => "SCRAM-SHA-512",
        }
    }

    pub(super) fn start(&self) -> Exchange<'_> {
        let nonce = B64.encode(rand::random::<[u8; 24]>());
        self.start_with_nonce(nonce)
    }

    fn start_with_nonce(&self, nonce: String) -> Exchange<'_> {
        Exchange {
            sasl: self,
            nonce,
            state: State::Start,
        }
    }

    fn algorithms(
        &self,
    ) -> (
        hmac::Algorithm,
        pbkdf2::Algorithm,
        &'static digest::Algorithm,
    ) {
        match self.mechanism {
            Mechanism::Scram512 => (
                hmac::HMAC_SHA512,
                pbkdf2::PBKDF2_HMAC_SHA512,
                &digest::SHA512,
            ),
            _ => (
                hmac::HMAC_SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
                &digest::SHA256,
            ),
        }
    }
}

/// The user name as SCRAM writes it (`=` and `,` escaped).
fn sasl_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn hmac_sign(alg: hmac::Algorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(alg, key), data)
        .as_ref()
        .to_vec()
}

impl Exchange<'_> {
    fn client_first_bare(&self) -> String {
        format!("n={},r={}", sasl_name(&self.sasl.username), self.nonce)
    }

    /// The first message to send.
    pub(super) fn first(&mut self) -> Vec<u8> {
        match self.sasl.mechanism {
            Mechanism::Plain => {
                self.state = State::Finished;
                format!("\0{}\0{}", self.sasl.username, self.sasl.password).into_bytes()
            }
            _ => {
                self.state = State::SentFirst;
                format!("n,,{}", self.client_first_bare()).into_bytes()
            }
        }
    }

    /// The answer to the broker's message `data`.
    pub(super) fn next(&mut self, data: &[u8]) -> Result<SaslStep, String> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Finished => Ok(SaslStep::Done),
            State::Start => Err("exchange not started".into()),
            State::SentFirst => {
                let (message, signature) = self.client_final(data)?;
                self.state = State::SentFinal(signature);
                Ok(SaslStep::Send(message))
            }
            State::SentFinal(expected) => {
                let text = std::str::from_utf8(data).map_err(|_| "server-final is not UTF-8")?;
                if let Some(e) = text.strip_prefix("e=") {
                    return Err(format!("the broker refused the proof: {e}"));
                }
                let v = text
                    .split(',')
                    .find_map(|f| f.strip_prefix("v="))
                    .ok_or("server-final has no signature")?;
                let got = B64
                    .decode(v)
                    .map_err(|_| "server signature is not base64")?;
                if got != expected {
                    return Err(
                        "the broker's signature does not match: it does not know the credential"
                            .into(),
                    );
                }
                Ok(SaslStep::Done)
            }
        }
    }

    /// The client-final message for the server-first message `data`, and
    /// the server signature to expect.
    fn client_final(&self, data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let server_first = std::str::from_utf8(data).map_err(|_| "server-first is not UTF-8")?;
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        let nonce = field("r").ok_or("server-first has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server nonce does not extend the client nonce".into());
        }
        let salt = B64
            .decode(field("s").ok_or("server-first has no salt")?)
            .map_err(|_| "salt is not base64")?;
        let iterations: u32 = field("i")
            .and_then(|i| i.parse().ok())
            .ok_or("server-first has no iteration count")?;
        let iterations = NonZeroU32::new(iterations)
            .filter(|i| i.get() <= MAX_ITERATIONS)
            .ok_or_else(|| format!("iteration count {iterations} is out of range"))?;
        let (hmac_alg, pbkdf2_alg, digest_alg) = self.sasl.algorithms();
        let mut salted = vec![0u8; digest_alg.output_len()];
        pbkdf2::derive(
            pbkdf2_alg,
            iterations,
            &salt,
            self.sasl.password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sign(hmac_alg, &salted, b"Client Key");
        let stored_key = digest::digest(digest_alg, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            self.client_first_bare()
        );
        let signature = hmac_sign(hmac_alg, stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac_sign(hmac_alg, &salted, b"Server Key");
        let server_signature = hmac_sign(hmac_alg, &server_key, auth_message.as_bytes());
        let message = format!("{without_proof},p={}", B64.encode(proof));
        Ok((message.into_bytes(), server_signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCRAM-SHA-256 example of RFC 7677, section 3.
    #[test]
    fn scram_sha256_matches_rfc_7677() {
        let sasl = Sasl::new("SCRAM-SHA-256", "user", "pencil").unwrap();
        let mut ex = sasl.start_with_nonce("rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(ex.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let SaslStep::Send(fin) = ex.next(server_first).unwrap() else {
            panic!("expected client-final")
        };
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(ex
            .next(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_ok());
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let sasl = Sasl::new("SCRAM-SHA-512", "u", "p").unwrap();
        let mut ex = sasl.start_with_nonce("abc".into());
        ex.first();
        ex.next(b"r=abcdef,s=c2FsdA==,i=4096").unwrap();
        assert!(ex.next(b"v=AAAA").is_err());
    }

    #[test]
    fn hostile_iteration_counts_are_refused() {
        let sasl = Sasl::new("SCRAM-SHA-512", "u", "p").unwrap();
        let mut ex = sasl.start_with_nonce("abc".into());
        ex.first();
        assert!(ex.next(b"r=abcdef,s=c2FsdA==,i=4000000000").is_err());
    }
}
