//! SCRAM enhanced authentication (MQTT 5 AUTH; EMQX `mechanism = "scram"`, `backend =
//! "built_in_database"`), RFC 5802 with SHA-256 (RFC 7677) or SHA-512:
//!
//! 1. CONNECT names method `SCRAM-SHA-256` and carries the client-first message
//!    (`n,,n=user,r=cnonce`) as Authentication Data;
//! 2. the broker answers AUTH 0x18 with the server-first message (`r=cnonce+snonce,s=salt,i=n`);
//! 3. the client sends AUTH 0x18 with the client-final message (`c=biws,r=...,p=proof`);
//! 4. the broker checks the proof and answers CONNACK 0x00 carrying the server-final message
//!    (`v=signature`), or refuses with 0x86 (bad user name or password).
//!
//! Channel binding is not offered: a gs2 header `p=...` is refused, `y` and `n` are accepted.
//! The server nonce is 18 bytes from the thread's CSPRNG; proofs are compared in constant
//! time. Malformed messages end the exchange with a failure, never a panic.
//!
//! An unknown user is not revealed at the server-first step: the exchange goes on with a salt
//! derived from the user name and a process secret (stable for that name while the process
//! runs) and the configured iteration count, and fails at the proof like a wrong password.
//! (The timing of a wrong password and of an unknown user differ only by a map lookup.)

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use portico_core::auth::{AuthExchange, AuthStep, ClientInfo, EnhancedAuth, Refusal};
use rand::RngCore;
use sha2::Digest;
use subtle::ConstantTimeEq;

pub mod client;
mod db;
pub mod fuzzing;

pub use client::ScramClient;
pub use db::{DEFAULT_ITERATIONS, KV_SPACE, MAX_ITERATIONS, ScramDb, ScramOpenError, ScramUser};

/// Longest client message accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Server nonce length before base64, in bytes.
const NONCE_LEN: usize = 18;

/// The hash of the mechanism (EMQX `algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScramAlgorithm {
    /// SCRAM-SHA-256 (EMQX's default).
    #[default]
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramAlgorithm {
    /// The MQTT Authentication Method clients name.
    pub fn method(self) -> &'static str {
        match self {
            ScramAlgorithm::Sha256 => "SCRAM-SHA-256",
            ScramAlgorithm::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                }
                // HMAC takes keys of any length; an empty result can only fail a comparison.
                Err(_) => Vec::new(),
            }
        }
        match self {
            ScramAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
            ScramAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            ScramAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// `SaltedPassword` = PBKDF2-HMAC(password, salt, iterations).
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramAlgorithm::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramAlgorithm::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    /// `(StoredKey, ServerKey)` for `password` (RFC 5802 §3).
    pub fn keys(self, password: &[u8], salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>) {
        let salted = self.salted_password(password, salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        (self.hash(&client_key), self.hmac(&salted, b"Server Key"))
    }
}

/// Keys the stand-in salts of unknown users: random per process.
static DECOY_SECRET: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
});

/// The SCRAM mechanism over a [`ScramDb`], registered with the broker as an enhanced
/// authentication method.
#[derive(Debug, Clone)]
pub struct ScramAuth {
    db: Arc<ScramDb>,
}

impl ScramAuth {
    /// The mechanism for the users of `db` (its algorithm names the method).
    pub fn new(db: Arc<ScramDb>) -> ScramAuth {
        ScramAuth { db }
    }

    /// The users.
    pub fn db(&self) -> &Arc<ScramDb> {
        &self.db
    }

    /// An exchange with a given server nonce (tests use RFC 7677's).
    pub fn start_with_nonce(&self, server_nonce: String) -> ScramExchange {
        ScramExchange {
            db: self.db.clone(),
            server_nonce,
            state: State::Start,
            superuser: false,
        }
    }
}

impl EnhancedAuth for ScramAuth {
    fn method(&self) -> &str {
        self.db.algorithm().method()
    }

    fn start(&self, _client: &ClientInfo) -> Box<dyn AuthExchange> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        Box::new(self.start_with_nonce(B64.encode(nonce)))
    }
}

enum State {
    Start,
    /// Server-first sent; what the final step needs.
    Challenged {
        gs2_header: String,
        auth_message: String,
        nonce: String,
        /// `None` for an unknown user: the proof cannot verify.
        user: Option<ScramUser>,
    },
    /// Finished (successfully or not): any further message fails.
    Done,
}

/// One client's run through SCRAM. See the module docs.
pub struct ScramExchange {
    db: Arc<ScramDb>,
    server_nonce: String,
    state: State,
    /// Set when the exchange succeeds for a superuser.
    superuser: bool,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramExchange")
    }
}

/// Why a message was refused (logged at debug level only).
type Refused = &'static str;

impl ScramExchange {
    fn first(&mut self, data: &[u8]) -> Result<AuthStep, Refused> {
        let text = message(data)?;
        // gs2-header = cbind-flag "," [authzid] ","
        let (flag, rest) = text.split_once(',').ok_or("no gs2 header")?;
        if !matches!(flag, "n" | "y") {
            return Err("channel binding is not supported");
        }
        let (authzid, bare) = rest.split_once(',').ok_or("no gs2 header")?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err("bad authzid");
        }
        let gs2_header = &text[..flag.len() + 1 + authzid.len() + 1];
        let mut attrs = bare.split(',');
        let user = attrs.next().and_then(|a| a.strip_prefix("n=")).ok_or("no user name")?;
        let user = sasl_name(user).ok_or("bad user name")?;
        let client_nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or("no nonce")?;
        if client_nonce.is_empty() || !printable(client_nonce) {
            return Err("bad nonce");
        }
        if attrs.any(|a| a.starts_with("m=")) {
            return Err("mandatory extension");
        }
        let algorithm = self.db.algorithm();
        let record = self.db.lookup(&user);
        let (salt, iterations) = match &record {
            Some(record) => (record.salt.clone(), record.iterations),
            None => {
                let mut salt = algorithm.hmac(&*DECOY_SECRET, user.as_bytes());
                salt.truncate(16);
                (salt, self.db.iterations())
            }
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state = State::Challenged {
            gs2_header: gs2_header.to_owned(),
            auth_message: format!("{bare},{server_first}"),
            nonce,
            user: record,
        };
        Ok(AuthStep::Continue(Some(Bytes::from(server_first))))
    }

    fn last(
        &self,
        data: &[u8],
        gs2_header: &str,
        auth_message: &str,
        nonce: &str,
        user: Option<&ScramUser>,
    ) -> Result<AuthStep, Refused> {
        let text = message(data)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("no proof")?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or("no channel binding")?;
        if B64.decode(binding).map_err(|_| "bad channel binding")? != gs2_header.as_bytes() {
            return Err("channel binding mismatch");
        }
        if attrs.next().and_then(|a| a.strip_prefix("r=")) != Some(nonce) {
            return Err("nonce mismatch");
        }
        let proof = B64.decode(proof).map_err(|_| "bad proof")?;
        let user = user.ok_or("unknown user")?;
        let algorithm = self.db.algorithm();
        let auth_message = format!("{auth_message},{without_proof}");
        let client_signature = algorithm.hmac(&user.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err("bad proof length");
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        let stored_key = algorithm.hash(&client_key);
        if !bool::from(stored_key.ct_eq(&user.stored_key)) {
            return Err("wrong password");
        }
        let server_signature = algorithm.hmac(&user.server_key, auth_message.as_bytes());
        Ok(AuthStep::Success(Some(Bytes::from(format!(
            "v={}",
            B64.encode(server_signature)
        )))))
    }
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        let data = data.unwrap_or_default();
        let result = match &state {
            State::Start => self.first(data),
            State::Challenged {
                gs2_header,
                auth_message,
                nonce,
                user,
            } => {
                let result = self.last(data, gs2_header, auth_message, nonce, user.as_ref());
                if let (Ok(AuthStep::Success(_)), Some(user)) = (&result, user) {
                    self.superuser = user.is_superuser;
                }
                result
            }
            State::Done => Err("the exchange is over"),
        };
        match result {
            Ok(step) => step,
            Err(why) => {
                self.state = State::Done;
                tracing::debug!(why, "SCRAM authentication failed");
                AuthStep::Failure(Refusal::BadCredentials)
            }
        }
    }

    fn superuser(&self) -> bool {
        self.superuser
    }
}

/// A client message as text, within [`MAX_MESSAGE_LEN`].
fn message(data: &[u8]) -> Result<&str, Refused> {
    if data.is_empty() || data.len() > MAX_MESSAGE_LEN {
        return Err("missing or oversized message");
    }
    std::str::from_utf8(data).map_err(|_| "not UTF-8")
}

/// Decodes a saslname: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn sasl_name(text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        out.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802 `printable`: ASCII 0x21..=0x7e except `,`.
fn printable(text: &str) -> bool {
    text.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests;
