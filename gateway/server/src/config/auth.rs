//! `authentication` (the chain), `authorization`, `flapping_detect` and `banned`: who may
//! connect and what they may do, in EMQX 5's shape.

use std::path::PathBuf;
use std::time::Duration;

use portico_auth::http::HttpSettings;
use portico_core::auth::{AuthzCacheSettings, DenyAction};
use portico_core::banned::FlappingSettings;
use toml::Value;

use super::auth_db::{self, DbKind};
use super::schema::{Ctx, Section, one_of};
use super::value;
use portico_auth::db::DbConnection;

/// One authenticator of the chain (`authentication[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorConfig {
    /// Consulted at all.
    pub enable: bool,
    /// Where the credentials are.
    pub backend: AuthnBackendConfig,
}

/// The backends an authenticator can use. EMQX's `mechanism = "password_based"` with a
/// `backend` (built-in database, HTTP, PostgreSQL, MySQL, Redis), `mechanism = "jwt"` or
/// `mechanism = "scram"`; the other backends (mongodb, ldap) are refused at load with a message
/// saying so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthnBackendConfig {
    /// `backend = "built_in_database"`: users in the durable store.
    BuiltInDatabase {
        /// `user_id_type`: match users by user name or by client id.
        user_id_type: UserIdType,
        /// `password_hash_algorithm`.
        password_hash: PasswordHashConfig,
        /// `bootstrap_file`: users imported at start (those not present yet).
        bootstrap_file: Option<PathBuf>,
        /// `bootstrap_type`: `plain` (passwords in clear) or `hash` (hash + salt).
        bootstrap_type: BootstrapType,
    },
    /// `mechanism = "jwt"`: a signed token in the password (or user name).
    Jwt {
        /// `from`: where the token is.
        from: JwtFrom,
        /// `algorithm = "hmac-based"` with `secret`, or `"public-key"` with `public_key`.
        key: JwtKey,
        /// `verify_claims`: claim name → expected value (`${username}`, `${clientid}`).
        verify_claims: Vec<(String, String)>,
        /// `acl_claim_name`: the claim holding the token's rules (`acl`).
        acl_claim_name: String,
    },
    /// `backend = "postgresql" | "mysql" | "redis"` (see `auth_db.rs`).
    Database {
        /// Which database.
        kind: DbKind,
        /// `server`, `database`, `username`, `password`, `pool_size`, `ssl`, `query_timeout`,
        /// `on_error`.
        connection: DbConnection,
        /// `query` (SQL) or `cmd` (Redis), checked at load.
        query: String,
        /// `password_hash_algorithm`.
        password_hash: PasswordHashConfig,
    },
    /// `backend = "http"`: a web service decides (keys in `auth_http.rs`).
    Http(HttpSettings),
    /// `mechanism = "scram"`: MQTT 5 enhanced authentication with SCRAM users in the store.
    Scram(super::auth_scram::ScramConfig),
}

/// Where a JWT is (`from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFrom {
    /// The password (EMQX's default).
    Password,
    /// The user name.
    Username,
}

/// How a JWT's signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// `hmac-based`: the shared secret (decoded when `secret_base64_encoded`).
    Hmac(Secret),
    /// `public-key`: an RSA or ECDSA public key in PEM.
    PublicKey(String),
    /// `use_jwks = true`: the keys of a JWKS endpoint.
    Jwks(super::auth_jwt::JwksConfig),
}

/// A configured secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How built-in users are keyed (`user_id_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIdType {
    /// By the CONNECT user name.
    Username,
    /// By the client id.
    ClientId,
}

/// What a bootstrap file holds (`bootstrap_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapType {
    /// `user_id,password,is_superuser`.
    Plain,
    /// `user_id,password_hash,salt,is_superuser`.
    Hash,
}

/// Hash algorithm names (`password_hash_algorithm.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashName {
    /// Stored in clear.
    Plain,
    /// MD5.
    Md5,
    /// SHA-1.
    Sha,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// bcrypt.
    Bcrypt,
    /// PBKDF2.
    Pbkdf2,
    /// Argon2id (not in EMQX).
    Argon2,
}

/// Where the salt goes for the plain digests (`salt_position`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltPosition {
    /// No salt.
    Disable,
    /// hash(salt ++ password).
    Prefix,
    /// hash(password ++ salt).
    Suffix,
}

/// `password_hash_algorithm = { name, salt_position, mac_fun, iterations, dk_length, salt_rounds }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHashConfig {
    /// The algorithm.
    pub name: HashName,
    /// md5/sha/sha256/sha512/plain: where the salt goes.
    pub salt_position: SaltPosition,
    /// pbkdf2: the HMAC hash (`md4`, `md5`, `ripemd160`, `sha`, `sha224`, `sha256`, `sha384`,
    /// `sha512`).
    pub mac_fun: String,
    /// pbkdf2: iterations.
    pub iterations: u32,
    /// pbkdf2: derived key length in bytes; `None` = the hash's output length.
    pub dk_length: Option<u32>,
    /// bcrypt: cost of new hashes.
    pub salt_rounds: u32,
}

impl Default for PasswordHashConfig {
    /// EMQX's built-in default: sha256 with a random salt as prefix, so that EMQX's exported
    /// hashes import unchanged. Not argon2: slow hashes now run off the connection tasks (they
    /// no longer stall other clients), but argon2id costs about 13 ms of CPU per check here, which
    /// caps a reconnect storm at tens of CONNECTs per second (docs/benchmarks.md,
    /// "Authentication cost" and "A CONNECT storm with a slow hash"); choose it where connect
    /// rates are low.
    fn default() -> Self {
        PasswordHashConfig {
            name: HashName::Sha256,
            // EMQX's default for the salted digests.
            salt_position: SaltPosition::Prefix,
            mac_fun: "sha256".to_owned(),
            iterations: 4096,
            dk_length: None,
            salt_rounds: 10,
        }
    }
}

/// `authorization.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationConfig {
    /// `no_match = "allow" | "deny"`: the answer when no source has a rule (true = allow).
    pub no_match_allow: bool,
    /// `deny_action = "ignore" | "disconnect"`.
    pub deny_action: DenyAction,
    /// `cache = { enable, max_size, ttl }`; `None` when disabled.
    pub cache: Option<AuthzCacheSettings>,
    /// `sources[]`, tried in order.
    pub sources: Vec<AuthzSourceConfig>,
}

impl Default for AuthorizationConfig {
    /// EMQX's defaults, with one source: the file `etc/acl.conf` (EMQX's default rules; when the
    /// file is absent at that default path the same rules are used from the binary).
    fn default() -> Self {
        AuthorizationConfig {
            no_match_allow: true,
            deny_action: DenyAction::Ignore,
            cache: Some(AuthzCacheSettings::default()),
            sources: vec![AuthzSourceConfig::File {
                path: PathBuf::from(DEFAULT_ACL_PATH),
            }],
        }
    }
}

/// The default `acl.conf` path (relative to the working directory).
pub const DEFAULT_ACL_PATH: &str = "etc/acl.conf";

/// One authorization source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzSourceConfig {
    /// `type = "file"`: rules in EMQX's `acl.conf` format.
    File {
        /// `path`.
        path: PathBuf,
    },
    /// `type = "postgresql" | "mysql" | "redis"` (see `auth_db.rs`).
    Database {
        /// Which database.
        kind: DbKind,
        /// The connection keys.
        connection: DbConnection,
        /// `query` (SQL) or `cmd` (Redis), checked at load.
        query: String,
    },
    /// `type = "http"`: a web service decides (keys in `auth_http.rs`).
    Http(HttpSettings),
    /// `type = "built_in_database"`: rules per client id, user name and for all, in the store.
    BuiltInDatabase {
        /// `max_rules`: rules per principal at most.
        max_rules: usize,
    },
}

/// `banned.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BannedConfig {
    /// `bootstrap_file`: bans imported at start (CSV `as,who,by,reason,at,until`).
    pub bootstrap_file: Option<PathBuf>,
}

/// Which backend an authenticator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthnKind {
    BuiltIn,
    Http,
    Database(DbKind),
}

/// Which kind an authorization source names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthzKind {
    File,
    BuiltIn,
    Http,
    Database(DbKind),
}

pub(super) fn authentication(sections: Vec<Section<'_>>, ctx: &mut Ctx<'_>) -> Vec<AuthenticatorConfig> {
    sections.into_iter().filter_map(|s| authenticator(s, ctx)).collect()
}

const NOT_YET: &str = "is not available yet (this build offers backend = \"built_in_database\", \"http\", \
                       \"postgresql\", \"mysql\", \"redis\", mechanism = \"jwt\" and mechanism = \"scram\")";

fn authenticator(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthenticatorConfig> {
    let enable = s.field(ctx, "enable", true, value::boolean);
    let mechanism = s.required(ctx, "mechanism", |v| match value::string(v)?.as_str() {
        "password_based" => Ok("password_based"),
        "jwt" => Ok("jwt"),
        "scram" => Ok("scram"),
        _ => Err("expected \"password_based\", \"jwt\" or \"scram\"".to_owned()),
    });
    if mechanism == Some("jwt") {
        let backend = super::auth_jwt::jwt(&mut s, ctx);
        s.finish(ctx);
        return backend.map(|backend| AuthenticatorConfig { enable, backend });
    }
    if mechanism == Some("scram") {
        let backend = super::auth_scram::scram(&mut s, ctx);
        s.finish(ctx);
        return backend.map(|backend| AuthenticatorConfig { enable, backend });
    }
    let backend = s.required(ctx, "backend", |v| match value::string(v)?.as_str() {
        "built_in_database" => Ok(AuthnKind::BuiltIn),
        "http" => Ok(AuthnKind::Http),
        name @ ("postgresql" | "mysql" | "redis") => DbKind::from_name(name)
            .map(AuthnKind::Database)
            .ok_or_else(|| format!("unknown database {name:?}")),
        "mongodb" | "ldap" => Err(format!("backend {} {NOT_YET}", render_str(v))),
        _ => Err("expected \"built_in_database\", \"http\", \"postgresql\", \"mysql\" or \"redis\"".to_owned()),
    });
    match backend {
        Some(AuthnKind::Database(kind)) => {
            let backend = auth_db::authn(kind, &mut s, ctx);
            s.finish(ctx);
            mechanism?;
            return backend.map(|backend| AuthenticatorConfig { enable, backend });
        }
        Some(AuthnKind::Http) => {
            let http = super::auth_http::authn(&mut s, ctx);
            s.finish(ctx);
            mechanism?;
            return http.map(|settings| AuthenticatorConfig {
                enable,
                backend: AuthnBackendConfig::Http(settings),
            });
        }
        Some(AuthnKind::BuiltIn) | None => {}
    }
    let user_id_type = s.field(ctx, "user_id_type", UserIdType::Username, |v| {
        one_of(
            v,
            &[(UserIdType::Username, "username"), (UserIdType::ClientId, "clientid")],
        )
    });
    let password_hash = password_hash(s.section(ctx, "password_hash_algorithm"), ctx);
    let bootstrap_file = s
        .read(ctx, "bootstrap_file", |v| value::non_empty_string(v).map(PathBuf::from))
        .ok()
        .flatten();
    let bootstrap_type = s.field(ctx, "bootstrap_type", BootstrapType::Plain, |v| {
        one_of(v, &[(BootstrapType::Plain, "plain"), (BootstrapType::Hash, "hash")])
    });
    s.finish(ctx);
    mechanism?;
    backend?;
    Some(AuthenticatorConfig {
        enable,
        backend: AuthnBackendConfig::BuiltInDatabase {
            user_id_type,
            password_hash,
            bootstrap_file,
            bootstrap_type,
        },
    })
}

pub(super) fn render_str(v: &Value) -> String {
    format!("{:?}", v.as_str().unwrap_or_default())
}

pub(super) fn password_hash(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> PasswordHashConfig {
    let d = PasswordHashConfig::default();
    let out = PasswordHashConfig {
        name: s.field(ctx, "name", d.name, |v| {
            one_of(
                v,
                &[
                    (HashName::Plain, "plain"),
                    (HashName::Md5, "md5"),
                    (HashName::Sha, "sha"),
                    (HashName::Sha256, "sha256"),
                    (HashName::Sha512, "sha512"),
                    (HashName::Bcrypt, "bcrypt"),
                    (HashName::Pbkdf2, "pbkdf2"),
                    (HashName::Argon2, "argon2"),
                ],
            )
        }),
        salt_position: s.field(ctx, "salt_position", d.salt_position, |v| {
            one_of(
                v,
                &[
                    (SaltPosition::Disable, "disable"),
                    (SaltPosition::Prefix, "prefix"),
                    (SaltPosition::Suffix, "suffix"),
                ],
            )
        }),
        mac_fun: s.field(ctx, "mac_fun", d.mac_fun, |v| {
            let name = value::string(v)?;
            match name.as_str() {
                "md4" | "md5" | "ripemd160" | "sha" | "sha224" | "sha256" | "sha384" | "sha512" => Ok(name),
                _ => Err("expected one of md4, md5, ripemd160, sha, sha224, sha256, sha384, sha512".to_owned()),
            }
        }),
        iterations: s.field(ctx, "iterations", d.iterations, |v| value::int_in(v, 1, 10_000_000)),
        dk_length: s.field(ctx, "dk_length", d.dk_length, |v| value::int_in(v, 1, 1024).map(Some)),
        salt_rounds: s.field(ctx, "salt_rounds", d.salt_rounds, |v| value::int_in(v, 4, 31)),
    };
    s.finish(ctx);
    out
}

pub(super) fn authorization(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> AuthorizationConfig {
    let d = AuthorizationConfig::default();
    let no_match_allow = s.field(ctx, "no_match", d.no_match_allow, |v| {
        one_of(v, &[(true, "allow"), (false, "deny")])
    });
    let deny_action = s.field(ctx, "deny_action", d.deny_action, |v| {
        one_of(
            v,
            &[(DenyAction::Ignore, "ignore"), (DenyAction::Disconnect, "disconnect")],
        )
    });
    let mut c = s.section(ctx, "cache");
    let defaults = AuthzCacheSettings::default();
    let enable = c.field(ctx, "enable", true, value::boolean);
    let max_size = c.field(ctx, "max_size", defaults.max_size, |v| value::int_in(v, 1, 1_048_576));
    let ttl = c.field(ctx, "ttl", defaults.ttl, |v| {
        let ttl = value::duration(v)?;
        if ttl.is_zero() {
            return Err("expected a duration above 0 (set enable = false to turn the cache off)".to_owned());
        }
        Ok(ttl)
    });
    c.finish(ctx);
    let has_sources = s.raw("sources").is_some();
    let sources: Vec<AuthzSourceConfig> = s
        .array_of_tables(ctx, "sources")
        .into_iter()
        .filter_map(|src| authz_source(src, ctx))
        .collect();
    s.finish(ctx);
    AuthorizationConfig {
        no_match_allow,
        deny_action,
        cache: enable.then_some(AuthzCacheSettings { max_size, ttl }),
        sources: if has_sources { sources } else { d.sources },
    }
}

fn authz_source(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> Option<AuthzSourceConfig> {
    let kind = s.required(ctx, "type", |v| match value::string(v)?.as_str() {
        "file" => Ok(AuthzKind::File),
        "http" => Ok(AuthzKind::Http),
        "built_in_database" => Ok(AuthzKind::BuiltIn),
        name @ ("postgresql" | "mysql" | "redis") => DbKind::from_name(name)
            .map(AuthzKind::Database)
            .ok_or_else(|| format!("unknown database {name:?}")),
        "mongodb" | "ldap" => Err(format!(
            "type {} is not available yet (this build offers type = \"file\", \"built_in_database\", \"http\", \"postgresql\", \"mysql\", \"redis\")",
            render_str(v)
        )),
        _ => Err(
            "expected \"file\", \"built_in_database\", \"http\", \"postgresql\", \"mysql\" or \"redis\"".to_owned(),
        ),
    });
    let enable = s.field(ctx, "enable", true, value::boolean);
    match kind {
        Some(AuthzKind::Database(kind)) => {
            let source = auth_db::authz(kind, &mut s, ctx);
            s.finish(ctx);
            return source.filter(|_| enable);
        }
        Some(AuthzKind::Http) => {
            let http = super::auth_http::authz(&mut s, ctx);
            s.finish(ctx);
            return http.filter(|_| enable).map(AuthzSourceConfig::Http);
        }
        Some(AuthzKind::BuiltIn) => {
            let source = super::authz_builtin::built_in_database(&mut s, ctx);
            s.finish(ctx);
            return source.filter(|_| enable);
        }
        Some(AuthzKind::File) | None => {}
    }
    let path = s.required(ctx, "path", |v| value::non_empty_string(v).map(PathBuf::from));
    s.finish(ctx);
    kind?;
    let path = path?;
    enable.then_some(AuthzSourceConfig::File { path })
}

pub(super) fn flapping_detect(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> FlappingSettings {
    let d = FlappingSettings::default();
    let positive = |v: &Value| -> Result<Duration, String> {
        let d = value::duration(v)?;
        if d.is_zero() {
            return Err("expected a duration above 0".to_owned());
        }
        Ok(d)
    };
    let out = FlappingSettings {
        enable: s.field(ctx, "enable", d.enable, value::boolean),
        max_count: s.field(ctx, "max_count", d.max_count, |v| value::int_in(v, 1, 1_000_000)),
        window: s.field(ctx, "window_time", d.window, positive),
        ban_time: s.field(ctx, "ban_time", d.ban_time, positive),
    };
    s.finish(ctx);
    out
}

pub(super) fn banned(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> BannedConfig {
    let out = BannedConfig {
        bootstrap_file: s
            .read(ctx, "bootstrap_file", |v| value::non_empty_string(v).map(PathBuf::from))
            .ok()
            .flatten(),
    };
    s.finish(ctx);
    out
}
