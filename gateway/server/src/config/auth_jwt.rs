//! `authentication[] { mechanism = "jwt" }`: EMQX 5's JWT authenticator keys.
//!
//! `from`, `algorithm` (`hmac-based` with `secret` / `secret_base64_encoded`, or `public-key`
//! with `public_key`), `use_jwks` with `endpoint`, `refresh_interval` (default 300 s, at least
//! 10 s) and `ssl = { enable, cacertfile, verify }`, `verify_claims`, `acl_claim_name` (default
//! `acl`) and `disconnect_after_expire` (accepted for EMQX files; Portico does not disconnect at
//! `exp`, it denies the token's rules from then on).

use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use super::auth::{AuthnBackendConfig, JwtFrom, JwtKey, Secret};
use super::schema::{Ctx, Section, one_of};
use super::value;

/// `use_jwks = true`: where the key set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// `endpoint`: the key set's URL.
    pub endpoint: String,
    /// `refresh_interval`: how often it is fetched again.
    pub refresh_interval: Duration,
    /// `ssl.cacertfile` (with `ssl.enable = true`): trust only these CAs; `None` = the
    /// platform's roots.
    pub cacertfile: Option<PathBuf>,
    /// `ssl.verify = "verify_none"` (with `ssl.enable = true`): accept any certificate.
    pub insecure: bool,
}

/// EMQX's default `refresh_interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

pub(super) fn jwt(s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthnBackendConfig> {
    let from = s.field(ctx, "from", JwtFrom::Password, |v| {
        one_of(v, &[(JwtFrom::Password, "password"), (JwtFrom::Username, "username")])
    });
    let use_jwks = s.field(ctx, "use_jwks", false, value::boolean);
    let public = s.field(ctx, "algorithm", false, |v| {
        one_of(v, &[(false, "hmac-based"), (true, "public-key")])
    });
    let base64 = s.field(ctx, "secret_base64_encoded", false, value::boolean);
    let secret = s.read(ctx, "secret", value::non_empty_string).ok().flatten();
    let public_key = s.read(ctx, "public_key", value::non_empty_string).ok().flatten();
    let endpoint = s.read(ctx, "endpoint", value::non_empty_string).ok().flatten();
    let refresh_interval = s.field(ctx, "refresh_interval", DEFAULT_REFRESH, |v| {
        let d = value::duration(v)?;
        if d < Duration::from_secs(10) {
            return Err("expected at least 10s (EMQX's floor)".to_owned());
        }
        Ok(d)
    });
    let mut ssl = s.section(ctx, "ssl");
    let ssl_enable = ssl.field(ctx, "enable", false, value::boolean);
    let cacertfile = ssl
        .read(ctx, "cacertfile", |v| value::non_empty_string(v).map(PathBuf::from))
        .ok()
        .flatten();
    let insecure = ssl.field(ctx, "verify", false, |v| {
        one_of(v, &[(false, "verify_peer"), (true, "verify_none")])
    });
    ssl.finish(ctx);
    let verify_claims = s.field(ctx, "verify_claims", Vec::new(), |v| {
        let Value::Table(table) = v else {
            return Err("expected a table of claim = \"value\"".to_owned());
        };
        table
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name.clone(), text.clone())),
                _ => Err(format!("claim {name:?}: expected a string")),
            })
            .collect()
    });
    let acl_claim_name = s.field(ctx, "acl_claim_name", "acl".to_owned(), value::non_empty_string);
    s.field(ctx, "disconnect_after_expire", true, value::boolean);
    let key = if use_jwks {
        let Some(endpoint) = endpoint else {
            ctx.invalid(&s.key("endpoint"), String::new(), "use_jwks = true needs `endpoint`");
            return None;
        };
        JwtKey::Jwks(JwksConfig {
            endpoint,
            refresh_interval,
            cacertfile: cacertfile.filter(|_| ssl_enable),
            insecure: ssl_enable && insecure,
        })
    } else if public {
        let Some(pem) = public_key else {
            ctx.invalid(
                &s.key("public_key"),
                String::new(),
                "algorithm = \"public-key\" needs `public_key`",
            );
            return None;
        };
        JwtKey::PublicKey(pem)
    } else {
        let Some(secret) = secret else {
            ctx.invalid(
                &s.key("secret"),
                String::new(),
                "algorithm = \"hmac-based\" needs `secret`",
            );
            return None;
        };
        let bytes = if base64 {
            let Some(bytes) = base64_decode(&secret) else {
                ctx.invalid(&s.key("secret"), "<redacted>".to_owned(), "not valid base64");
                return None;
            };
            bytes
        } else {
            secret.into_bytes()
        };
        JwtKey::Hmac(Secret(bytes))
    };
    Some(AuthnBackendConfig::Jwt {
        from,
        key,
        verify_claims,
        acl_claim_name,
    })
}

/// Standard base64 (padding optional), for `secret_base64_encoded`.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        acc = (acc << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
