//! JWT authentication (EMQX `mechanism = "jwt"`): the client puts a signed token in its
//! password (or user name); the signature is checked with a shared HMAC secret, a public key
//! (RSA or ECDSA, PEM) or the keys of a JWKS endpoint ([`jwks`]), `exp` and `nbf` are enforced
//! when present, and `verify_claims` compares claims with the client's identity (`${username}`,
//! `${clientid}` placeholders). An `acl` claim (the name is configurable) becomes the client's
//! own rules ([`acl`]), checked before the authorization sources; `is_superuser: true` makes a
//! superuser.
//!
//! Verdicts: no token → ignore (the next authenticator may know the client); a token that does
//! not verify, has expired, fails a claim or carries a malformed `acl` claim → deny. With JWKS:
//! before the first successful fetch there are no keys and every token is ignored, as EMQX does
//! when it cannot get the key set (with `allow_anonymous = false` the client is refused); a
//! token whose `kid` is not in the set triggers an early refresh (rate-limited) and is checked
//! again against the new set.
//!
//! Differences from EMQX: a token whose signature does not verify is denied (EMQX ignores it,
//! letting the next authenticator decide); EMQX's `disconnect_after_expire` (disconnect the
//! client at `exp`) is not implemented: after `exp` the client stays connected but its token's
//! `acl` rules deny everything.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use portico_core::auth::{ClientInfo, Refusal};
use serde_json::Value;

use crate::AuthnVerdict;
use crate::chain::Check;

pub mod acl;
pub mod jwks;

pub use acl::ClaimAcl;
pub use jwks::{Jwks, JwksSettings};

/// The claim holding the token's rules by default (EMQX `acl_claim_name`).
pub const DEFAULT_ACL_CLAIM: &str = "acl";

/// Where the token is (`from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFrom {
    /// The CONNECT password (EMQX's default).
    Password,
    /// The CONNECT user name.
    Username,
}

enum Keys {
    /// One configured key (secret or PEM) and the algorithms it verifies.
    Static {
        key: DecodingKey,
        algorithms: Vec<Algorithm>,
    },
    /// The keys of a JWKS endpoint.
    Jwks(Arc<Jwks>),
}

/// A JWT authenticator.
pub struct JwtAuth {
    keys: Keys,
    from: TokenFrom,
    verify_claims: Vec<(String, String)>,
    acl_claim: String,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static { algorithms, .. } => format!("{algorithms:?}"),
            Keys::Jwks(jwks) => format!("{jwks:?}"),
        };
        f.debug_struct("JwtAuth")
            .field("keys", &keys)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// What verification found, before the JWKS early refresh is considered.
enum Outcome {
    Done(AuthnVerdict),
    /// The token names a key id the JWKS does not hold.
    UnknownKid,
}

impl JwtAuth {
    fn with_keys(keys: Keys, from: TokenFrom, verify_claims: Vec<(String, String)>) -> JwtAuth {
        JwtAuth {
            keys,
            from,
            verify_claims,
            acl_claim: DEFAULT_ACL_CLAIM.to_owned(),
        }
    }

    /// Tokens signed with HMAC (HS256, HS384, HS512) and `secret`.
    pub fn hmac(secret: &[u8], from: TokenFrom, verify_claims: Vec<(String, String)>) -> JwtAuth {
        let keys = Keys::Static {
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        };
        Self::with_keys(keys, from, verify_claims)
    }

    /// Tokens signed with the private key of `pem`, an RSA (RS*, PS*) or ECDSA (ES256, ES384)
    /// public key in PEM.
    pub fn public_key(pem: &[u8], from: TokenFrom, verify_claims: Vec<(String, String)>) -> Result<JwtAuth, String> {
        let (key, algorithms) = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, jwks::RSA_ALGORITHMS.to_vec()),
            Err(rsa_error) => match DecodingKey::from_ec_pem(pem) {
                Ok(key) => (key, jwks::EC_ALGORITHMS.to_vec()),
                Err(ec_error) => {
                    return Err(format!(
                        "not an RSA ({rsa_error}) or ECDSA ({ec_error}) public key in PEM"
                    ));
                }
            },
        };
        Ok(Self::with_keys(Keys::Static { key, algorithms }, from, verify_claims))
    }

    /// Tokens signed with one of the keys of `jwks` (chosen by `kid`, or all tried without).
    pub fn jwks(jwks: Arc<Jwks>, from: TokenFrom, verify_claims: Vec<(String, String)>) -> JwtAuth {
        Self::with_keys(Keys::Jwks(jwks), from, verify_claims)
    }

    /// Reads the token's rules from claim `name` instead of `acl`.
    pub fn with_acl_claim(mut self, name: impl Into<String>) -> JwtAuth {
        self.acl_claim = name.into();
        self
    }

    /// What this authenticator says about `client`, now: a token naming a key id the JWKS does
    /// not hold is denied without a refresh (see [`check_deferred`](Self::check_deferred)).
    pub fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthnVerdict {
        match self.verify(client, password) {
            Outcome::Done(verdict) => verdict,
            Outcome::UnknownKid => AuthnVerdict::Deny(Refusal::BadCredentials),
        }
    }

    /// [`check`](Self::check), except that a token naming a key id the JWKS does not hold
    /// refreshes the key set first (when the last fetch is old enough) and is checked again.
    pub fn check_deferred(self: &Arc<Self>, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        match self.verify(client, password) {
            Outcome::Done(verdict) => Check::Now(verdict),
            Outcome::UnknownKid => match &self.keys {
                Keys::Jwks(jwks) if jwks.may_refresh_early() => {
                    let (auth, jwks) = (self.clone(), jwks.clone());
                    let client = client.clone();
                    let password = password.map(bytes::Bytes::copy_from_slice);
                    Check::Later(Box::pin(async move {
                        jwks.refresh_early().await;
                        auth.check(&client, password.as_deref())
                    }))
                }
                _ => Check::Now(AuthnVerdict::Deny(Refusal::BadCredentials)),
            },
        }
    }

    fn verify(&self, client: &ClientInfo, password: Option<&[u8]>) -> Outcome {
        let deny = |refusal| Outcome::Done(AuthnVerdict::Deny(refusal));
        let token = match self.from {
            TokenFrom::Password => password.and_then(|p| std::str::from_utf8(p).ok()).map(str::to_owned),
            TokenFrom::Username => client.username.as_ref().map(|u| u.to_string()),
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Outcome::Done(AuthnVerdict::Ignore);
        };
        let header = match jsonwebtoken::decode_header(&token) {
            Ok(header) => header,
            Err(error) => {
                tracing::debug!(client_id = %client.client_id, %error, "not a JWT");
                return deny(Refusal::BadCredentials);
            }
        };
        let candidates: Vec<DecodingKey> = match &self.keys {
            Keys::Static { key, algorithms } => {
                if algorithms.contains(&header.alg) {
                    vec![key.clone()]
                } else {
                    Vec::new()
                }
            }
            Keys::Jwks(jwks) => {
                let Some(keys) = jwks.keys() else {
                    tracing::debug!(client_id = %client.client_id, "no JWKS keys yet: token ignored");
                    return Outcome::Done(AuthnVerdict::Ignore);
                };
                let named: Vec<_> = keys
                    .iter()
                    .filter(|k| header.kid.is_none() || k.kid == header.kid)
                    .collect();
                if named.is_empty() && header.kid.is_some() {
                    return Outcome::UnknownKid;
                }
                named
                    .into_iter()
                    .filter(|k| k.algorithms.contains(&header.alg))
                    .map(|k| k.key.clone())
                    .collect()
            }
        };
        if candidates.is_empty() {
            tracing::debug!(client_id = %client.client_id, alg = ?header.alg, "no key verifies this JWT's algorithm");
            return deny(Refusal::BadCredentials);
        }
        let mut validation = Validation::new(header.alg);
        // `exp` and `nbf` are checked when present, as EMQX does; neither is required.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.validate_aud = false;
        let mut claims = None;
        for key in &candidates {
            match decode::<Value>(&token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(error) => tracing::debug!(client_id = %client.client_id, %error, "JWT refused"),
            }
        }
        let Some(claims) = claims else {
            return deny(Refusal::BadCredentials);
        };
        Outcome::Done(self.judge(client, &claims))
    }

    /// The verdict on a token whose signature and times are good.
    fn judge(&self, client: &ClientInfo, claims: &Value) -> AuthnVerdict {
        for (name, expected) in &self.verify_claims {
            let Some(expected) = fill(expected, client) else {
                return AuthnVerdict::Deny(Refusal::NotAuthorized);
            };
            if claims.get(name).and_then(Value::as_str) != Some(expected.as_str()) {
                tracing::debug!(client_id = %client.client_id, claim = %name, "JWT claim does not match");
                return AuthnVerdict::Deny(Refusal::NotAuthorized);
            }
        }
        let superuser = claims.get("is_superuser").and_then(Value::as_bool).unwrap_or(false);
        let acl = match claims.get(&self.acl_claim) {
            None => None,
            Some(claim) => {
                let expires = claims.get("exp").and_then(Value::as_i64);
                match ClaimAcl::parse(claim, expires) {
                    Ok(acl) => Some(Arc::new(acl) as Arc<dyn portico_core::auth::ClientAcl>),
                    Err(error) => {
                        tracing::debug!(client_id = %client.client_id, %error, "malformed acl claim");
                        return AuthnVerdict::Deny(Refusal::BadCredentials);
                    }
                }
            }
        };
        AuthnVerdict::Allow { superuser, acl }
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `template` with `${username}` and `${clientid}` filled in; `None` when it needs a user name
/// the client did not send.
fn fill(template: &str, client: &ClientInfo) -> Option<String> {
    let mut out = template.replace("${clientid}", &client.client_id);
    if out.contains("${username}") {
        out = out.replace("${username}", client.username.as_deref()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn client(user: Option<&str>) -> ClientInfo {
        ClientInfo {
            client_id: ByteString::from_static("dev-1"),
            username: user.map(|u| ByteString::from(u.to_owned())),
            peer: "127.0.0.1:1".parse().expect("address"),
            protocol: "mqtt",
            superuser: false,
            cert: None,
            acl: None,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn token(claims: Value, secret: &[u8]) -> Vec<u8> {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("signed")
        .into_bytes()
    }

    #[test]
    fn hmac_tokens_with_claims_exp_and_nbf() {
        let auth = JwtAuth::hmac(
            b"s3cret",
            TokenFrom::Password,
            vec![("clientid".to_owned(), "${clientid}".to_owned())],
        );
        let c = client(Some("alice"));
        let good = token(json!({"clientid": "dev-1", "exp": now() + 60}), b"s3cret");
        assert_eq!(auth.check(&c, Some(&good)), AuthnVerdict::allow(false));
        let superuser = token(json!({"clientid": "dev-1", "is_superuser": true}), b"s3cret");
        assert_eq!(auth.check(&c, Some(&superuser)), AuthnVerdict::allow(true));
        let expired = token(json!({"clientid": "dev-1", "exp": now() - 10}), b"s3cret");
        assert_eq!(
            auth.check(&c, Some(&expired)),
            AuthnVerdict::Deny(Refusal::BadCredentials)
        );
        let early = token(json!({"clientid": "dev-1", "nbf": now() + 600}), b"s3cret");
        assert_eq!(
            auth.check(&c, Some(&early)),
            AuthnVerdict::Deny(Refusal::BadCredentials)
        );
        let forged = token(json!({"clientid": "dev-1"}), b"other");
        assert_eq!(
            auth.check(&c, Some(&forged)),
            AuthnVerdict::Deny(Refusal::BadCredentials)
        );
        let wrong_client = token(json!({"clientid": "dev-2"}), b"s3cret");
        assert_eq!(
            auth.check(&c, Some(&wrong_client)),
            AuthnVerdict::Deny(Refusal::NotAuthorized)
        );
        assert_eq!(
            auth.check(&c, None),
            AuthnVerdict::Ignore,
            "no token: the next authenticator decides"
        );
        assert_eq!(
            auth.check(&c, Some(b"not.a.jwt")),
            AuthnVerdict::Deny(Refusal::BadCredentials)
        );
        assert_eq!(
            auth.check(&c, Some(&[0xff, 0xfe])),
            AuthnVerdict::Ignore,
            "not UTF-8: no token"
        );
    }

    #[test]
    fn token_from_username_and_a_missing_username_claim() {
        let auth = JwtAuth::hmac(
            b"k",
            TokenFrom::Username,
            vec![("sub".to_owned(), "${username}".to_owned())],
        );
        let t = String::from_utf8(token(json!({"sub": "x"}), b"k")).expect("ascii");
        // The token is the user name, so ${username} is the token itself: the claim fails.
        assert_eq!(
            auth.check(&client(Some(&t)), None),
            AuthnVerdict::Deny(Refusal::NotAuthorized)
        );
        let open = JwtAuth::hmac(b"k", TokenFrom::Username, Vec::new());
        assert_eq!(open.check(&client(Some(&t)), None), AuthnVerdict::allow(false));
    }

    #[test]
    fn a_bad_public_key_is_a_clear_error() {
        let err = JwtAuth::public_key(b"not a pem", TokenFrom::Password, Vec::new()).expect_err("refused");
        assert!(err.contains("public key in PEM"), "{err}");
    }
}
