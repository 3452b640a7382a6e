//! Configuration: `etc/portico.toml` plus `PORTICO_*` environment overrides, using EMQX 5 key names
//! so that EMQX users can carry their settings over.
//!
//! Loading happens in four steps:
//! 1. read the TOML file (or start from an empty table: all defaults);
//! 2. merge the API overrides, `{node.data_dir}/configs/api.toml`, over it (see `overrides.rs`);
//! 3. apply `PORTICO_*` environment variables on top (`PORTICO_A__B=v` sets `a.b`; see `env.rs`);
//! 4. validate the merged tree into [`Config`], collecting *every* problem into [`ConfigErrors`].
//!
//! Value formats: durations are EMQX strings such as `"30s"`, `"5m"`, `"1h30m"` (units `ms`, `s`,
//! `m`, `h`, `d`, `w`) and a bare integer is always seconds; sizes are integers (bytes) or strings
//! such as `"1MB"` (B, KB, MB, GB; 1KB = 1024); counts accept `"infinity"` where EMQX does.
//! Lists of tables (`rewrite`, `auto_subscribe.topics`) name their elements 0-based in errors
//! (`rewrite[2].re`), while environment variables address them 1-based (`PORTICO_REWRITE__3__RE`).

mod auth;
mod auth_db;
mod auth_http;
mod auth_jwt;
mod auth_scram;
mod authz_builtin;
mod dashboard;
mod env;
mod error;
mod gateway;
mod listeners;
mod overrides;
mod schema;
mod source;
mod sysmon;
mod trace;
mod types;
mod value;
mod webhook;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::Path;

use toml::{Table, Value};

pub use auth::{
    AuthenticatorConfig, AuthnBackendConfig, AuthorizationConfig, AuthzSourceConfig, BannedConfig, BootstrapType,
    DEFAULT_ACL_PATH, HashName, JwtFrom, JwtKey, PasswordHashConfig, SaltPosition, Secret, UserIdType,
};
pub use auth_db::DbKind;
pub use auth_jwt::JwksConfig;
pub use auth_scram::{ScramAlgorithmName, ScramConfig};
pub use dashboard::DashboardConfig;
pub use error::{ConfigError, ConfigErrors, Source};
pub use gateway::{
    CoapConfig, DtlsListenerConfig, DtlsOptions, GatewayConfig, Lwm2mConfig, MqttSnConfig, NotifyType, PskConfig,
    QosPolicy, StompConfig, UdpListenerConfig,
};
pub use overrides::api_overrides_path;
pub(crate) use overrides::{env_conflicts, merge as merge_tables, write as write_api_overrides};
pub use source::{ConfigSource, MASK, is_secret_key};
pub use sysmon::{AlarmConfig, SysmonConfig, SysmonOsConfig};
pub use trace::TraceConfig;
pub use types::{
    AutoSubscribe, AutoSubscribeConfig, Config, ConsoleLogConfig, DelayedConfig, DurableConfig, ListenersConfig,
    LogConfig, LogLevel, MqttConfig, NodeConfig, PeerCertAs, RetainerConfig, RewriteAction, RewriteRule,
    SharedStrategy, SslListenerConfig, SslOptions, SysEventMessages, SysTopicsConfig, TcpListenerConfig, Verify,
    WebsocketOptions, WsListenerConfig, WssListenerConfig,
};
pub use webhook::WebhookConfig;

/// Environment variable the binary reads the config file path from; never treated as a key.
pub const CONFIG_PATH_ENV: &str = "PORTICO_CONFIG";
/// Environment variable holding a tracing filter override; never treated as a key.
pub const LOG_FILTER_ENV: &str = "PORTICO_LOG";

impl Config {
    /// Loads the configuration from an optional TOML file plus environment overrides.
    ///
    /// `env` is usually [`process_env()`]; tests pass their own pairs. Variables that do not start
    /// with `PORTICO_`, and the command-line aids `PORTICO_CONFIG` and `PORTICO_LOG`, are ignored.
    ///
    /// A file that cannot be read or parsed is reported on its own, without validating the rest:
    /// with the file's content unknown, further messages would mostly be noise. Otherwise every
    /// problem in the file and the environment is reported together.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigErrors> {
        Config::load_layers(path, None, env)
    }

    /// [`Config::load`] with the API-override layer given (`Some`) instead of read from
    /// `{node.data_dir}/configs/api.toml`: how the API checks a change before writing it.
    pub(crate) fn load_layers(
        path: Option<&Path>,
        api: Option<Table>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let file_table = match path {
            Some(path) => read_file(path).map_err(|e| ConfigErrors(vec![e]))?,
            None => Table::new(),
        };
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(var, _)| env::key_parts(var).is_some())
            .collect();
        let api_path = overrides::api_overrides_path(&overrides::data_dir_before_overrides(&file_table, &env));
        let api = match api {
            Some(api) => api,
            None => overrides::read(&api_path).map_err(|e| ConfigErrors(vec![e]))?,
        };
        let mut origins = schema::Origins {
            file: path.map(Path::to_path_buf),
            api_file: Some(api_path.clone()),
            ..Default::default()
        };
        let mut file_keys = HashSet::new();
        schema::collect_paths(&Value::Table(file_table.clone()), "", &mut file_keys);
        origins.file_keys = file_keys;
        let mut api_keys = HashSet::new();
        schema::collect_paths(&Value::Table(api.clone()), "", &mut api_keys);
        origins.api_keys = api_keys;
        let mut merged = file_table;
        overrides::merge(&mut merged, &api);
        let mut root = Value::Table(merged);

        let mut errors = Vec::new();
        env::apply(&mut root, env.iter().cloned(), &mut origins.env, &mut errors);
        let empty = Table::new();
        // The root is always a table: env overrides cannot replace it (their paths are non-empty).
        let root_table = root.as_table().unwrap_or(&empty);
        let mut config = schema::build(root_table, &origins, &mut errors);
        if errors.is_empty() {
            config.source = ConfigSource {
                path: path.map(Path::to_path_buf),
                env,
                tree: root_table.clone(),
                api_path,
                api,
                ..ConfigSource::default()
            };
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// The process environment as `(name, value)` pairs for [`Config::load`].
///
/// Unlike `std::env::vars()` this never panics: non-UTF-8 names or values are converted lossily,
/// so a broken `PORTICO_*` variable is reported by validation instead of crashing startup.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect()
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.parse::<Table>().map_err(|e| {
        let (line, column) = e.span().map(|span| line_column(&text, span.start)).unwrap_or((1, 1));
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// 1-based line and column (in chars) of byte offset `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}
