//! JWT authentication (EMQX `mechanism = "jwt"`): the client puts a signed token in its
//! password (or user name); the signature is checked with a shared HMAC secret or a public key
//! (RSA or ECDSA, PEM), `exp` and `nbf` are enforced when present, and `verify_claims` compares
//! claims with the client's identity (`${username}`, `${clientid}` placeholders).
//!
//! Verdicts: no token → ignore (the next authenticator may know the client); a token that does
//! not verify, has expired or fails a claim → deny.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use portico_core::auth::{ClientInfo, Refusal};
use serde_json::Value;

use crate::AuthnVerdict;

/// Where the token is (`from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFrom {
    /// The CONNECT password (EMQX's default).
    Password,
    /// The CONNECT user name.
    Username,
}

/// A JWT authenticator.
pub struct JwtAuth {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    from: TokenFrom,
    verify_claims: Vec<(String, String)>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.algorithms)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// Tokens signed with HMAC (HS256, HS384, HS512) and `secret`.
    pub fn hmac(secret: &[u8], from: TokenFrom, verify_claims: Vec<(String, String)>) -> JwtAuth {
        JwtAuth {
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            from,
            verify_claims,
        }
    }

    /// Tokens signed with the private key of `pem`, an RSA (RS*, PS*) or ECDSA (ES256, ES384)
    /// public key in PEM.
    pub fn public_key(pem: &[u8], from: TokenFrom, verify_claims: Vec<(String, String)>) -> Result<JwtAuth, String> {
        let (key, algorithms) = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => (
                key,
                vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
            ),
            Err(rsa_error) => match DecodingKey::from_ec_pem(pem) {
                Ok(key) => (key, vec![Algorithm::ES256, Algorithm::ES384]),
                Err(ec_error) => {
                    return Err(format!(
                        "not an RSA ({rsa_error}) or ECDSA ({ec_error}) public key in PEM"
                    ));
                }
            },
        };
        Ok(JwtAuth {
            key,
            algorithms,
            from,
            verify_claims,
        })
    }

    /// What this authenticator says about `client`.
    pub fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> AuthnVerdict {
        let token = match self.from {
            TokenFrom::Password => password.and_then(|p| std::str::from_utf8(p).ok()).map(str::to_owned),
            TokenFrom::Username => client.username.as_ref().map(|u| u.to_string()),
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return AuthnVerdict::Ignore;
        };
        let header = match jsonwebtoken::decode_header(&token) {
            Ok(header) => header,
            Err(error) => {
                tracing::debug!(client_id = %client.client_id, %error, "not a JWT");
                return AuthnVerdict::Deny(Refusal::BadCredentials);
            }
        };
        if !self.algorithms.contains(&header.alg) {
            tracing::debug!(client_id = %client.client_id, alg = ?header.alg, "JWT signed with an algorithm this key does not verify");
            return AuthnVerdict::Deny(Refusal::BadCredentials);
        }
        let mut validation = Validation::new(header.alg);
        // `exp` and `nbf` are checked when present, as EMQX does; neither is required.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.validate_aud = false;
        let claims = match decode::<Value>(&token, &self.key, &validation) {
            Ok(data) => data.claims,
            Err(error) => {
                tracing::debug!(client_id = %client.client_id, %error, "JWT refused");
                return AuthnVerdict::Deny(Refusal::BadCredentials);
            }
        };
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
        AuthnVerdict::allow(superuser)
    }
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
