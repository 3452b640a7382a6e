//! The client side of SCRAM, for tests and tools that log in to a SCRAM-protected broker: it
//! builds the client-first and client-final messages and checks the server's signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::ScramAlgorithm;

/// One client login.
#[derive(Debug, Clone)]
pub struct ScramClient {
    algorithm: ScramAlgorithm,
    bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A login as `user` (written as given: `,` and `=` must be escaped by the caller) with
    /// client nonce `nonce`.
    pub fn new(algorithm: ScramAlgorithm, user: &str, nonce: &str) -> ScramClient {
        ScramClient {
            algorithm,
            bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_owned(),
            server_signature: None,
        }
    }

    /// The client-first message.
    pub fn first(&self) -> String {
        format!("n,,{}", self.bare)
    }

    /// The client-final message answering `server_first` with `password`; `None` if the
    /// server-first message is malformed or does not extend the client nonce.
    pub fn last(&mut self, server_first: &str, password: &[u8]) -> Option<String> {
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in server_first.split(',') {
            match attr.split_at_checked(2)? {
                ("r=", v) => nonce = Some(v),
                ("s=", v) => salt = B64.decode(v).ok(),
                ("i=", v) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (nonce, salt, iterations) = (nonce?, salt?, iterations?);
        if !nonce.starts_with(&self.nonce) || iterations == 0 {
            return None;
        }
        let algorithm = self.algorithm;
        let salted = algorithm.salted_password(password, &salt, iterations);
        let client_key = algorithm.hmac(&salted, b"Client Key");
        let stored_key = algorithm.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = algorithm.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = algorithm.hmac(&salted, b"Server Key");
        self.server_signature = Some(algorithm.hmac(&server_key, auth_message.as_bytes()));
        Some(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// True when `server_final` (`v=...`) carries the signature the server must have made.
    pub fn verify(&self, server_final: &str) -> bool {
        let Some(expected) = &self.server_signature else {
            return false;
        };
        server_final
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .is_some_and(|got| &got == expected)
    }
}
