//! Builds the configured authentication and authorization chains and installs them in the
//! broker, once its durable store is open (built-in users and bans live there) and before any
//! listener opens.

use std::path::Path;
use std::sync::Arc;

use portico_api::{AuthenticatorInfo, AuthzSourceInfo};
use portico_auth::acl::AclFile;
use portico_auth::authz_db::AuthzDb;
use portico_auth::builtin::{BuiltinDb, ImportKind, UserIdType as DbUserIdType};
use portico_auth::chain::{AuthnBackend, AuthnChain, AuthzChain, AuthzSource, Check};
use portico_auth::db::DbConnection;
use portico_auth::db::redis::{RedisAuthn, RedisAuthz, RedisCommand, RedisDb};
use portico_auth::db::sql::{Dialect, SqlAuthn, SqlAuthz, SqlDb, SqlQuery};
use portico_auth::http::{HttpAuthn, HttpAuthz};
use portico_auth::jwt::{Jwks, JwksSettings, JwtAuth, TokenFrom};
use portico_auth::password::{HashAlgorithm, MacFun, SaltPosition as DbSaltPosition};
use portico_auth::scram::{ScramAlgorithm, ScramAuth, ScramDb};
use portico_auth::template::{Template, Var};
use portico_auth::{AuthnVerdict, AuthzVerdict};
use portico_core::Broker;
use portico_core::auth::{Action, AllowAll, ClientInfo, EnhancedAuth};
use serde_json::{Map, Value, json};

use crate::StartError;
use crate::config::{
    AuthnBackendConfig, AuthzSourceConfig, BootstrapType, Config, DEFAULT_ACL_PATH, DbKind, HashName, JwksConfig,
    JwtFrom, JwtKey, PasswordHashConfig, SaltPosition, ScramAlgorithmName, UserIdType,
};

/// EMQX's default rules, used when the default `etc/acl.conf` is not where the configuration
/// says (e.g. the binary runs outside the source tree).
const DEFAULT_ACL: &str = include_str!("../../../etc/acl.conf");

/// What was installed, as the HTTP API lists and manages it: every authenticator (disabled ones
/// too) and authorization source, with the built-in user and rule databases.
#[derive(Debug, Clone, Default)]
pub(crate) struct Installed {
    pub(crate) authenticators: Vec<AuthenticatorInfo>,
    pub(crate) sources: Vec<AuthzSourceInfo>,
}

/// Builds both chains from `config` and installs them in `broker`; also imports the banned
/// list's bootstrap file.
pub(crate) fn install(broker: &Broker, config: &Config) -> Result<Installed, StartError> {
    let mut installed = Installed::default();
    if let Some(path) = &config.banned.bootstrap_file {
        let text = std::fs::read_to_string(path).map_err(|e| invalid("banned.bootstrap_file", path, e))?;
        let added = broker
            .banned()
            .import_csv(&text)
            .map_err(|why| invalid("banned.bootstrap_file", path, why))?;
        tracing::info!(path = %path.display(), added, "bans imported");
    }

    let mut backends: Vec<Arc<dyn AuthnBackend>> = Vec::new();
    let mut enhanced: Vec<Arc<dyn EnhancedAuth>> = Vec::new();
    for (index, authenticator) in config.authentication.iter().enumerate() {
        let key = |k: &str| format!("authentication[{index}].{k}");
        let mut info = describe_authn(authenticator.enable, &authenticator.backend);
        if !authenticator.enable {
            // A disabled built-in database still has its users, which the API manages.
            if let AuthnBackendConfig::BuiltInDatabase {
                user_id_type,
                password_hash,
                ..
            } = &authenticator.backend
            {
                info.users = Some(Arc::new(open_builtin(broker, user_id_type, password_hash, &key)?));
            }
            installed.authenticators.push(info);
            continue;
        }
        match &authenticator.backend {
            AuthnBackendConfig::BuiltInDatabase {
                user_id_type,
                password_hash,
                bootstrap_file,
                bootstrap_type,
            } => {
                let db = open_builtin(broker, user_id_type, password_hash, &key)?;
                if let Some(path) = bootstrap_file {
                    let kind = match bootstrap_type {
                        BootstrapType::Plain => ImportKind::Plain,
                        BootstrapType::Hash => ImportKind::Hash,
                    };
                    let report = db
                        .bootstrap(path, kind)
                        .map_err(|e| invalid(&key("bootstrap_file"), path, e))?;
                    for failure in &report.failures {
                        tracing::warn!(path = %path.display(), ?failure, "bootstrap user not imported");
                    }
                    tracing::info!(
                        path = %path.display(),
                        added = report.added,
                        skipped = report.skipped,
                        failed = report.failed,
                        "built-in users bootstrapped"
                    );
                }
                let db = Arc::new(db);
                info.users = Some(db.clone());
                backends.push(Arc::new(Builtin(db)));
            }
            AuthnBackendConfig::Jwt {
                from,
                key: jwt_key,
                verify_claims,
                acl_claim_name,
            } => {
                let from = match from {
                    JwtFrom::Password => TokenFrom::Password,
                    JwtFrom::Username => TokenFrom::Username,
                };
                let auth = match jwt_key {
                    JwtKey::Hmac(secret) => JwtAuth::hmac(&secret.0, from, verify_claims.clone()),
                    JwtKey::PublicKey(pem) => JwtAuth::public_key(pem.as_bytes(), from, verify_claims.clone())
                        .map_err(|why| StartError::Invalid {
                            key: key("public_key"),
                            why,
                        })?,
                    JwtKey::Jwks(jwks) => JwtAuth::jwks(start_jwks(jwks, &key)?, from, verify_claims.clone()),
                };
                backends.push(Arc::new(Jwt(Arc::new(auth.with_acl_claim(acl_claim_name.clone())))));
            }
            AuthnBackendConfig::Scram(scram) => {
                let algorithm = match scram.algorithm {
                    ScramAlgorithmName::Sha256 => ScramAlgorithm::Sha256,
                    ScramAlgorithmName::Sha512 => ScramAlgorithm::Sha512,
                };
                let db = ScramDb::open(broker.journal().cloned(), algorithm, scram.iteration_count).map_err(|e| {
                    StartError::Invalid {
                        key: key("backend"),
                        why: e.to_string(),
                    }
                })?;
                if let Some(path) = &scram.bootstrap_file {
                    let text = std::fs::read_to_string(path).map_err(|e| invalid(&key("bootstrap_file"), path, e))?;
                    let (added, failures) = db.bootstrap_csv(&text);
                    for failure in &failures {
                        tracing::warn!(path = %path.display(), failure, "SCRAM bootstrap user not imported");
                    }
                    tracing::info!(path = %path.display(), added, "SCRAM users bootstrapped");
                }
                tracing::info!(
                    method = algorithm.method(),
                    users = db.len(),
                    "SCRAM enhanced authentication on"
                );
                enhanced.push(Arc::new(ScramAuth::new(Arc::new(db))));
            }
            AuthnBackendConfig::Database {
                kind,
                connection,
                query,
                password_hash,
            } => {
                let algorithm = algorithm(password_hash).map_err(|why| StartError::Invalid {
                    key: key("password_hash_algorithm"),
                    why,
                })?;
                let what = if *kind == DbKind::Redis { "cmd" } else { "query" };
                backends.push(
                    db_authn(*kind, connection, query, algorithm)
                        .map_err(|why| StartError::Invalid { key: key(what), why })?,
                );
            }
            AuthnBackendConfig::Http(settings) => {
                let http =
                    HttpAuthn::new(settings.clone()).map_err(|why| StartError::Invalid { key: key("url"), why })?;
                tracing::info!(url = %settings.url, "HTTP authentication");
                backends.push(Arc::new(http));
            }
        }
        installed.authenticators.push(info);
    }
    // Enhanced authentication runs beside the password chain: a CONNECT naming a method uses
    // it, one without uses the chain.
    broker.set_enhanced_auth(enhanced);
    if backends.is_empty() && config.mqtt.allow_anonymous {
        // Nothing to ask: skip the chain altogether.
        broker.set_authenticator(Arc::new(AllowAll));
    } else {
        broker.set_authenticator(Arc::new(AuthnChain::new(backends, config.mqtt.allow_anonymous)));
    }

    let authorization = &config.authorization;
    let mut sources: Vec<Arc<dyn AuthzSource>> = Vec::new();
    for (index, source) in authorization.sources.iter().enumerate() {
        let mut info = describe_authz(source);
        match source {
            AuthzSourceConfig::File { path } => {
                let rules = load_acl(path).map_err(|why| StartError::Invalid {
                    key: format!("authorization.sources[{index}].path"),
                    why,
                })?;
                tracing::info!(path = %path.display(), rules = rules.len(), "acl file loaded");
                sources.push(Arc::new(Acl(rules)));
            }
            AuthzSourceConfig::Database {
                kind,
                connection,
                query,
            } => {
                let what = if *kind == DbKind::Redis { "cmd" } else { "query" };
                sources.push(db_authz(*kind, connection, query).map_err(|why| StartError::Invalid {
                    key: format!("authorization.sources[{index}].{what}"),
                    why,
                })?);
            }
            AuthzSourceConfig::Http(settings) => {
                let http = HttpAuthz::new(settings.clone()).map_err(|why| StartError::Invalid {
                    key: format!("authorization.sources[{index}].url"),
                    why,
                })?;
                tracing::info!(url = %settings.url, "HTTP authorization");
                sources.push(Arc::new(http));
            }
            AuthzSourceConfig::BuiltInDatabase { max_rules } => {
                let db = AuthzDb::open(broker.journal().cloned(), *max_rules).map_err(|e| StartError::Invalid {
                    key: format!("authorization.sources[{index}]"),
                    why: e.to_string(),
                })?;
                tracing::info!(principals = db.list().len(), "built-in authorization rules loaded");
                let db = Arc::new(db);
                info.rules = Some(db.clone());
                sources.push(Arc::new(RuleDb(db)));
            }
        }
        installed.sources.push(info);
    }
    if sources.is_empty() && authorization.no_match_allow {
        broker.set_authorizer(Arc::new(AllowAll));
    } else {
        broker.set_authorizer(Arc::new(AuthzChain::new(sources, authorization.no_match_allow)));
    }
    Ok(installed)
}

/// Opens a built-in user database (its users are in the durable store).
fn open_builtin(
    broker: &Broker,
    user_id_type: &UserIdType,
    password_hash: &PasswordHashConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<BuiltinDb, StartError> {
    let algorithm = algorithm(password_hash).map_err(|why| StartError::Invalid {
        key: key("password_hash_algorithm"),
        why,
    })?;
    let id_type = match user_id_type {
        UserIdType::Username => DbUserIdType::Username,
        UserIdType::ClientId => DbUserIdType::ClientId,
    };
    BuiltinDb::open(broker.journal().cloned(), algorithm, id_type).map_err(|e| StartError::Invalid {
        key: key("backend"),
        why: e.to_string(),
    })
}

fn db_name(kind: DbKind) -> &'static str {
    match kind {
        DbKind::Postgres => "postgresql",
        DbKind::MySql => "mysql",
        DbKind::Redis => "redis",
    }
}

/// The settings of a database connection that are not secret (no password).
fn db_settings(settings: &mut Map<String, Value>, connection: &DbConnection) {
    settings.insert(
        "server".to_owned(),
        json!(format!("{}:{}", connection.host, connection.port)),
    );
    settings.insert("database".to_owned(), json!(connection.database));
    if let Some(username) = &connection.username {
        settings.insert("username".to_owned(), json!(username));
    }
}

/// EMQX's id, mechanism and backend of an authenticator, and its settings that are not
/// secret (no password, secret, key, header or URL, which may hold credentials).
fn describe_authn(enable: bool, backend: &AuthnBackendConfig) -> AuthenticatorInfo {
    let mut settings = Map::new();
    let (mechanism, backend) = match backend {
        AuthnBackendConfig::BuiltInDatabase {
            user_id_type,
            password_hash,
            ..
        } => {
            let user_id_type = match user_id_type {
                UserIdType::Username => "username",
                UserIdType::ClientId => "clientid",
            };
            settings.insert("user_id_type".to_owned(), json!(user_id_type));
            if let Ok(algorithm) = algorithm(password_hash) {
                settings.insert("password_hash_algorithm".to_owned(), json!({"name": algorithm.name()}));
            }
            ("password_based", Some("built_in_database"))
        }
        AuthnBackendConfig::Jwt { from, .. } => {
            let from = match from {
                JwtFrom::Password => "password",
                JwtFrom::Username => "username",
            };
            settings.insert("from".to_owned(), json!(from));
            ("jwt", None)
        }
        AuthnBackendConfig::Scram(scram) => {
            let algorithm = match scram.algorithm {
                ScramAlgorithmName::Sha256 => "sha256",
                ScramAlgorithmName::Sha512 => "sha512",
            };
            settings.insert("algorithm".to_owned(), json!(algorithm));
            settings.insert("iteration_count".to_owned(), json!(scram.iteration_count));
            ("scram", Some("built_in_database"))
        }
        AuthnBackendConfig::Database { kind, connection, .. } => {
            db_settings(&mut settings, connection);
            ("password_based", Some(db_name(*kind)))
        }
        AuthnBackendConfig::Http(_) => ("password_based", Some("http")),
    };
    AuthenticatorInfo {
        id: backend.map_or_else(|| mechanism.to_owned(), |b| format!("{mechanism}:{b}")),
        mechanism,
        backend,
        enable,
        settings,
        users: None,
    }
}

/// EMQX's type of an authorization source and its settings that are not secret.
fn describe_authz(source: &AuthzSourceConfig) -> AuthzSourceInfo {
    let mut settings = Map::new();
    let kind = match source {
        AuthzSourceConfig::File { path } => {
            settings.insert("path".to_owned(), json!(path.display().to_string()));
            "file"
        }
        AuthzSourceConfig::Database { kind, connection, .. } => {
            db_settings(&mut settings, connection);
            db_name(*kind)
        }
        AuthzSourceConfig::Http(_) => "http",
        AuthzSourceConfig::BuiltInDatabase { max_rules } => {
            settings.insert("max_rules".to_owned(), json!(max_rules));
            BUILT_IN_DATABASE
        }
    };
    AuthzSourceInfo {
        kind,
        enable: true,
        settings,
        rules: None,
    }
}

const BUILT_IN_DATABASE: &str = "built_in_database";

fn invalid(key: &str, path: &Path, why: impl std::fmt::Display) -> StartError {
    StartError::Invalid {
        key: key.to_owned(),
        why: format!("{}: {why}", path.display()),
    }
}

/// The rules of `path`; EMQX's defaults when `path` is the default one and does not exist.
fn load_acl(path: &Path) -> Result<AclFile, String> {
    if path == Path::new(DEFAULT_ACL_PATH) && !path.exists() {
        tracing::info!("{DEFAULT_ACL_PATH} not found; using EMQX's default rules built into the binary");
        return AclFile::parse(DEFAULT_ACL).map_err(|e| format!("the built-in default rules: {e}"));
    }
    AclFile::load(path).map_err(|e| e.to_string())
}

fn algorithm(config: &PasswordHashConfig) -> Result<HashAlgorithm, String> {
    let salt_position = match config.salt_position {
        SaltPosition::Disable => DbSaltPosition::Disable,
        SaltPosition::Prefix => DbSaltPosition::Prefix,
        SaltPosition::Suffix => DbSaltPosition::Suffix,
    };
    let algorithm = match config.name {
        HashName::Plain => HashAlgorithm::Plain { salt_position },
        HashName::Md5 => HashAlgorithm::Md5 { salt_position },
        HashName::Sha => HashAlgorithm::Sha { salt_position },
        HashName::Sha256 => HashAlgorithm::Sha256 { salt_position },
        HashName::Sha512 => HashAlgorithm::Sha512 { salt_position },
        HashName::Pbkdf2 => HashAlgorithm::Pbkdf2 {
            mac_fun: MacFun::from_name(&config.mac_fun)
                .ok_or_else(|| format!("unknown mac_fun {:?}", config.mac_fun))?,
            iterations: config.iterations,
            dk_length: config.dk_length,
        },
        HashName::Bcrypt => HashAlgorithm::Bcrypt {
            salt_rounds: config.salt_rounds,
        },
        HashName::Argon2 => HashAlgorithm::default(),
    };
    algorithm.validate().map_err(|e| e.to_string())?;
    Ok(algorithm)
}

fn dialect(kind: DbKind) -> Dialect {
    match kind {
        DbKind::MySql => Dialect::MySql,
        _ => Dialect::Postgres,
    }
}

/// A database authentication backend; its connection is made when first needed.
fn db_authn(
    kind: DbKind,
    connection: &DbConnection,
    query: &str,
    algorithm: HashAlgorithm,
) -> Result<Arc<dyn AuthnBackend>, String> {
    Ok(match kind {
        DbKind::Redis => Arc::new(RedisAuthn::new(
            RedisDb::new(connection)?,
            RedisCommand::for_authn(query)?,
            algorithm,
        )),
        DbKind::Postgres | DbKind::MySql => {
            let template = Template::parse(query, Var::AUTHN).map_err(|e| e.to_string())?;
            let dialect = dialect(kind);
            Arc::new(SqlAuthn::new(
                SqlDb::new(dialect, connection),
                SqlQuery::new(&template, dialect),
                algorithm,
            ))
        }
    })
}

/// A database authorization source; its connection is made when first needed.
fn db_authz(kind: DbKind, connection: &DbConnection, query: &str) -> Result<Arc<dyn AuthzSource>, String> {
    Ok(match kind {
        DbKind::Redis => Arc::new(RedisAuthz::new(
            RedisDb::new(connection)?,
            RedisCommand::for_authz(query)?,
        )),
        DbKind::Postgres | DbKind::MySql => {
            let template = Template::parse(query, Var::AUTHZ).map_err(|e| e.to_string())?;
            let dialect = dialect(kind);
            Arc::new(SqlAuthz::new(
                SqlDb::new(dialect, connection),
                SqlQuery::new(&template, dialect),
            ))
        }
    })
}

struct Builtin(Arc<BuiltinDb>);

impl AuthnBackend for Builtin {
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        self.0.check_deferred(client, password)
    }
}

struct Jwt(Arc<JwtAuth>);

impl AuthnBackend for Jwt {
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        self.0.check_deferred(client, password)
    }
}

/// The key set of `config`, fetched now and kept fresh by a task on the current runtime.
fn start_jwks(config: &JwksConfig, key: &dyn Fn(&str) -> String) -> Result<Arc<Jwks>, StartError> {
    let ca_pem = match &config.cacertfile {
        Some(path) => Some(std::fs::read(path).map_err(|e| invalid(&key("ssl.cacertfile"), path, e))?),
        None => None,
    };
    let jwks = Jwks::new(JwksSettings {
        refresh_interval: config.refresh_interval,
        ca_pem,
        insecure: config.insecure,
        ..JwksSettings::new(config.endpoint.clone())
    })
    .map_err(|why| StartError::Invalid {
        key: key("endpoint"),
        why,
    })?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| StartError::Invalid {
        key: key("use_jwks"),
        why: format!("no async runtime to refresh the key set on: {e}"),
    })?;
    jwks.start(&runtime);
    Ok(jwks)
}

struct Acl(AclFile);

impl AuthzSource for Acl {
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Check<AuthzVerdict> {
        Check::Now(self.0.check(client, action, topic))
    }
}

struct RuleDb(Arc<AuthzDb>);

impl AuthzSource for RuleDb {
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Check<AuthzVerdict> {
        Check::Now(self.0.check(client, action, topic))
    }
}
