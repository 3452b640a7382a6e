//! Redis (EMQX `backend = "redis"`, authorization `type = "redis"`), `redis_type = "single"`.
//!
//! The command template is split on whitespace into arguments first, then each argument is
//! rendered: a user name with spaces (or `\r\n`) stays one argument and cannot add commands.
//!
//! - Authentication: `HMGET key field...` or `HGET key field` (EMQX's checks: fields among
//!   `password_hash`, `password`, `salt`, `is_superuser`, with `password_hash` or `password`).
//!   Default: `HMGET mqtt_user:${username} password_hash salt is_superuser`. All fields absent
//!   → ignore.
//! - Authorization: `HGETALL key`, whose fields are topic filters and values the action
//!   (`publish`, `subscribe`, `all`, or EMQX's JSON `{"action": ...}`); every such rule allows
//!   (EMQX's Redis rules cannot deny). Default: `HGETALL mqtt_acl:${username}`. Portico also
//!   reads 2.x-4.x values `1` (subscribe), `2` (publish), `3` (both).
//!
//! One multiplexed connection per configured server, connected on first use and re-made after
//! a failure; `pool_size` is accepted for EMQX compatibility but one pipelined connection
//! serves all checks. Sentinel and cluster modes are refused at configuration time.

use std::sync::Arc;

use portico_core::auth::{Action, ClientInfo};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};

use super::{DbConnection, DbRule, Health, OnError, Selected};
use crate::chain::{AuthnBackend, AuthzSource, Check};
use crate::password::HashAlgorithm;
use crate::template::{Context, Template, TemplateError, Var};
use crate::{AuthnVerdict, AuthzVerdict};

/// EMQX's documented authentication command.
pub const DEFAULT_AUTHN_CMD: &str = "HMGET mqtt_user:${username} password_hash salt is_superuser";
/// EMQX's documented authorization command.
pub const DEFAULT_AUTHZ_CMD: &str = "HGETALL mqtt_acl:${username}";
/// The fields an authentication command may read.
const AUTHN_FIELDS: [&str; 4] = ["password_hash", "password", "salt", "is_superuser"];

/// A command template: one template per argument.
#[derive(Debug, Clone)]
pub struct RedisCommand {
    args: Vec<Template>,
}

impl RedisCommand {
    /// Splits `text` on whitespace and parses each argument with the placeholders in `vars`.
    pub fn parse(text: &str, vars: &[Var]) -> Result<RedisCommand, String> {
        let args = text
            .split_whitespace()
            .map(|arg| Template::parse(arg, vars))
            .collect::<Result<Vec<_>, TemplateError>>()
            .map_err(|e| e.to_string())?;
        if args.is_empty() {
            return Err("the command is empty".to_owned());
        }
        if !args[0].is_constant() {
            return Err("the command name cannot be a placeholder".to_owned());
        }
        Ok(RedisCommand { args })
    }

    /// The command name, upper case.
    fn name(&self) -> String {
        self.args[0].to_string().to_ascii_uppercase()
    }

    /// The arguments after the key (constant text).
    fn fields(&self) -> Vec<String> {
        self.args.iter().skip(2).map(Template::to_string).collect()
    }

    /// A command for authentication: checked as EMQX checks it.
    pub fn for_authn(text: &str) -> Result<RedisCommand, String> {
        let cmd = RedisCommand::parse(text, Var::AUTHN)?;
        let name = cmd.name();
        if name != "HMGET" && name != "HGET" {
            return Err(format!("{name} is not supported: use HMGET or HGET"));
        }
        if cmd.args.len() < 3 || (name == "HGET" && cmd.args.len() != 3) {
            return Err(format!(
                "{name} needs a key and {}",
                if name == "HGET" { "one field" } else { "fields" }
            ));
        }
        let fields = cmd.fields();
        if cmd.args[2..].iter().any(|a| !a.is_constant()) {
            return Err("fields cannot be placeholders".to_owned());
        }
        if let Some(bad) = fields.iter().find(|f| !AUTHN_FIELDS.contains(&f.as_str())) {
            return Err(format!(
                "field {bad:?} is not one of password_hash, password, salt, is_superuser"
            ));
        }
        if !fields.iter().any(|f| f == "password_hash" || f == "password") {
            return Err("the fields must include password_hash or password".to_owned());
        }
        Ok(cmd)
    }

    /// A command for authorization: `HGETALL key`.
    pub fn for_authz(text: &str) -> Result<RedisCommand, String> {
        let cmd = RedisCommand::parse(text, Var::AUTHZ)?;
        let name = cmd.name();
        if name != "HGETALL" || cmd.args.len() != 2 {
            return Err(format!("{name} is not supported: use HGETALL with a key"));
        }
        Ok(cmd)
    }

    fn render(&self, cx: &Context<'_>) -> redis::Cmd {
        let mut cmd = redis::cmd(&self.name());
        for arg in &self.args[1..] {
            cmd.arg(arg.render_plain(cx));
        }
        cmd
    }
}

/// A connection to one Redis server.
pub struct RedisDb {
    manager: ConnectionManager,
    timeout: std::time::Duration,
    on_error: OnError,
    health: Health,
}

impl std::fmt::Debug for RedisDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDb").field("backend", &self.health).finish()
    }
}

impl RedisDb {
    /// A connection to `conn` (database index in `conn.database`, default 0), made on first use.
    /// Call inside a tokio runtime.
    pub fn new(conn: &DbConnection) -> Result<Arc<RedisDb>, String> {
        let db: i64 = if conn.database.is_empty() {
            0
        } else {
            conn.database
                .parse()
                .map_err(|_| format!("database {:?} is not a number", conn.database))?
        };
        let addr = if conn.tls.enable {
            ConnectionAddr::TcpTls {
                host: conn.host.clone(),
                port: conn.port,
                insecure: !conn.tls.verify,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(conn.host.clone(), conn.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(db);
        if let Some(user) = &conn.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &conn.password {
            settings = settings.set_password(&password.0);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| e.to_string())?
            .set_redis_settings(settings);
        let client = match (&conn.tls.ca_file, conn.tls.enable) {
            (Some(ca), true) => {
                let root_cert = std::fs::read(ca).map_err(|e| format!("ssl.cacertfile {}: {e}", ca.display()))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            _ => redis::Client::open(info),
        }
        .map_err(|e| e.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(conn.timeout))
            .set_response_timeout(Some(conn.timeout))
            .set_number_of_retries(1);
        let manager = client.get_connection_manager_lazy(config).map_err(|e| e.to_string())?;
        let scheme = if conn.tls.enable { "rediss" } else { "redis" };
        Ok(Arc::new(RedisDb {
            manager,
            timeout: conn.timeout,
            on_error: conn.on_error,
            health: Health::new(format!("{scheme}://{}:{}/{db}", conn.host, conn.port)),
        }))
    }

    async fn query(&self, cmd: redis::Cmd) -> Result<Value, String> {
        let mut manager = self.manager.clone();
        let result = match tokio::time::timeout(self.timeout, cmd.query_async::<Value>(&mut manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match &result {
            Ok(_) => self.health.ok(),
            Err(e) => self.health.failed(e),
        }
        result
    }
}

/// A bulk or simple string as text; `None` for nil and everything else.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Authentication from a hash per user.
#[derive(Debug)]
pub struct RedisAuthn {
    db: Arc<RedisDb>,
    cmd: RedisCommand,
    fields: Vec<String>,
    algorithm: HashAlgorithm,
}

impl RedisAuthn {
    /// Checks users with `cmd` (see [`RedisCommand::for_authn`]) and `algorithm`.
    pub fn new(db: Arc<RedisDb>, cmd: RedisCommand, algorithm: HashAlgorithm) -> RedisAuthn {
        let fields = cmd.fields();
        RedisAuthn {
            db,
            cmd,
            fields,
            algorithm,
        }
    }
}

impl AuthnBackend for RedisAuthn {
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        let cmd = self.cmd.render(&Context::authn(client, password));
        let (db, fields, algorithm) = (self.db.clone(), self.fields.clone(), self.algorithm);
        let password = password.map(bytes::Bytes::copy_from_slice);
        Check::Later(Box::pin(async move {
            let value = match db.query(cmd).await {
                Ok(value) => value,
                Err(_) => return super::authn_failure(db.on_error),
            };
            let values = match value {
                Value::Array(values) => values,
                single => vec![single],
            };
            let mut selected = Selected::default();
            let mut found = false;
            for (field, value) in fields.iter().zip(values.iter()) {
                let value = text(value);
                found |= value.is_some();
                selected.set(field, value);
            }
            if !found {
                return AuthnVerdict::Ignore;
            }
            super::verify(algorithm, selected, password).await
        }))
    }
}

/// Authorization from a hash of topic → action per user.
#[derive(Debug)]
pub struct RedisAuthz {
    db: Arc<RedisDb>,
    cmd: RedisCommand,
}

impl RedisAuthz {
    /// Reads rules with `cmd` (see [`RedisCommand::for_authz`]).
    pub fn new(db: Arc<RedisDb>, cmd: RedisCommand) -> RedisAuthz {
        RedisAuthz { db, cmd }
    }
}

/// The action of one Redis rule value: a word, a 2.x-4.x number, or EMQX's JSON object.
fn rule_action(value: &str) -> Option<String> {
    match value.trim() {
        word @ ("publish" | "subscribe" | "all" | "1" | "2" | "3") => Some(word.to_owned()),
        json => serde_json::from_str::<serde_json::Value>(json)
            .ok()?
            .get("action")?
            .as_str()
            .map(str::to_owned),
    }
}

impl AuthzSource for RedisAuthz {
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Check<AuthzVerdict> {
        let cmd = self.cmd.render(&Context::authz(client, action, topic));
        let db = self.db.clone();
        let (client, topic) = (client.clone(), topic.to_owned());
        Check::Later(Box::pin(async move {
            let value = match db.query(cmd).await {
                Ok(value) => value,
                Err(_) => return super::authz_failure(db.on_error),
            };
            let pairs: Vec<(String, String)> = match value {
                Value::Map(pairs) => pairs.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
                Value::Array(items) => items
                    .chunks(2)
                    .filter_map(|kv| match kv {
                        [k, v] => Some((text(k)?, text(v)?)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let rules = pairs.iter().map(|(filter, value)| {
                let action = rule_action(value).ok_or_else(|| format!("rule value {value:?} names no action"))?;
                DbRule::parse(Some("allow"), Some(&action), Some(filter))
            });
            super::decide(&db.health.name, rules, &client, action, &topic)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked_like_emqx() {
        assert!(RedisCommand::for_authn(DEFAULT_AUTHN_CMD).is_ok());
        assert!(RedisCommand::for_authn("HGET mqtt_user:${username} password").is_ok());
        assert!(RedisCommand::for_authn("GET mqtt_user:${username}").is_err());
        assert!(RedisCommand::for_authn("HMGET mqtt_user:${username} salt").is_err());
        assert!(RedisCommand::for_authn("HMGET mqtt_user:${username} password_hash secret").is_err());
        assert!(RedisCommand::for_authn("HMGET k:${nope} password_hash").is_err());
        assert!(RedisCommand::for_authz(DEFAULT_AUTHZ_CMD).is_ok());
        assert!(RedisCommand::for_authz("HGETALL").is_err());
        assert!(RedisCommand::for_authz("DEL mqtt_acl:${username}").is_err());
        assert!(RedisCommand::for_authz("").is_err());
    }

    #[test]
    fn arguments_are_split_before_rendering() {
        let cmd = RedisCommand::for_authn(DEFAULT_AUTHN_CMD).expect("valid");
        let client = ClientInfo::new(
            bytestring::ByteString::from_static("c"),
            Some(bytestring::ByteString::from_static("a b\r\nFLUSHALL")),
            "127.0.0.1:1".parse().expect("address"),
            "mqtt",
        );
        let rendered = cmd.render(&Context::authn(&client, None));
        let args: Vec<Vec<u8>> = rendered
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(args.len(), 5, "HMGET, the key and three fields");
        assert_eq!(args[1], b"mqtt_user:a b\r\nFLUSHALL".to_vec());
    }

    #[test]
    fn rule_values() {
        assert_eq!(rule_action("publish").as_deref(), Some("publish"));
        assert_eq!(rule_action("3").as_deref(), Some("3"));
        assert_eq!(
            rule_action(r#"{"action":"subscribe","qos":[1]}"#).as_deref(),
            Some("subscribe")
        );
        assert_eq!(rule_action("nonsense"), None);
    }
}
