//! Where the running configuration came from, kept so that the HTTP API can show it
//! (`GET /api/v5/configs`) and read it again (`POST /api/v5/configs/reload`, as SIGHUP does).
//!
//! What is shown is the *effective tree*: the TOML file with the `PORTICO_*` environment
//! overrides applied, exactly as validated. Keys left unset take their defaults
//! (`etc/portico.toml` lists them) and are not shown. This is less code than a `Serialize`
//! on every config struct, and shows the operator's own spelling (`"30s"`, `"1MB"`). Secrets
//! are masked by key name (see [`is_secret_key`]) before anything leaves this module.

use std::path::PathBuf;

use portico_core::store::DurabilityMode;
use serde_json::{Map, Value as Json};
use toml::Table;

use super::{Config, ConfigErrors};

/// What a secret is shown as.
pub const MASK: &str = "******";

/// The file, environment and command-line flag a configuration was loaded from, and the tree
/// they made. Not part of the configuration's value: two configurations compare equal
/// whatever their sources (so a reload compares settings, not where they came from).
#[derive(Clone, Default)]
pub struct ConfigSource {
    /// The TOML file, if any.
    pub path: Option<PathBuf>,
    /// The `PORTICO_*` variables used (never shown: they may hold secrets).
    pub env: Vec<(String, String)>,
    /// Read the process environment again on reload (the binary), rather than `env` (tests).
    pub process_env: bool,
    /// The command line's `--memory`, applied again on reload.
    pub memory: bool,
    /// The file's tree with the API overrides and the environment applied.
    pub tree: Table,
    /// Where the API overrides are kept: `{node.data_dir}/configs/api.toml`.
    pub api_path: PathBuf,
    /// The API overrides as loaded (see `overrides.rs`).
    pub api: Table,
}

impl PartialEq for ConfigSource {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("path", &self.path)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

/// The top-level sections, shown (empty) when the file and environment leave them unset;
/// `true` for those that are lists.
const SECTIONS: [(&str, bool); 21] = [
    ("node", false),
    ("log", false),
    ("listeners", false),
    ("mqtt", false),
    ("delayed", false),
    ("rewrite", true),
    ("auto_subscribe", false),
    ("sys_topics", false),
    ("retainer", false),
    ("durable_sessions", false),
    ("authentication", true),
    ("authorization", false),
    ("flapping_detect", false),
    ("banned", false),
    ("gateway", false),
    ("psk_authentication", false),
    ("dashboard", false),
    ("webhook", false),
    ("sysmon", false),
    ("alarm", false),
    ("trace", false),
];

impl ConfigSource {
    /// Loads the configuration from this source: the file, the environment (the process's
    /// again when `process_env`), then `--memory`. The binary's start and SIGHUP and the API's
    /// reload all go through here.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        self.load_layers(None)
    }

    /// [`ConfigSource::load`] with `api` as the API-override layer instead of the file's: a
    /// change through the API, checked before it is written.
    pub fn load_with_api(&self, api: Table) -> Result<Config, ConfigErrors> {
        self.load_layers(Some(api))
    }

    /// The `PORTICO_*` variables this source applies (the process's now, for the binary).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        if self.process_env {
            super::process_env()
                .into_iter()
                .filter(|(var, _)| super::env::key_parts(var).is_some())
                .collect()
        } else {
            self.env.clone()
        }
    }

    fn load_layers(&self, api: Option<Table>) -> Result<Config, ConfigErrors> {
        let mut config = Config::load_layers(self.path.as_deref(), api, self.env_vars())?;
        config.source.process_env = self.process_env;
        config.source.memory = self.memory;
        if self.memory {
            config.durable_sessions.mode = DurabilityMode::Memory;
        }
        Ok(config)
    }

    /// The effective tree as JSON with every secret replaced by [`MASK`]; every top-level
    /// section is present.
    pub fn to_masked_json(&self) -> Json {
        let mut json = serde_json::to_value(&self.tree).unwrap_or_else(|_| Json::Object(Map::new()));
        mask(&mut json, false);
        if let Json::Object(map) = &mut json {
            for (name, list) in SECTIONS {
                map.entry(name).or_insert_with(|| {
                    if list {
                        Json::Array(Vec::new())
                    } else {
                        Json::Object(Map::new())
                    }
                });
            }
        }
        json
    }
}

/// Whether a key's value is a secret, by the last word of its name (words split on `_` and
/// `-`): `password` (`default_password`, TLS `key_password`), `secret` (JWT HMAC, API
/// secrets), `token`, `credential(s)`, `cookie` (`node.cookie`), `authorization`, `psk` and
/// `key` (`private_key`; not `public_key`). So `token_expired_time` or
/// `secret_base64_encoded` are shown.
pub fn is_secret_key(key: &str) -> bool {
    const SECRET_WORDS: [&str; 11] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "cookie",
        "authorization",
        "psk",
        "key",
    ];
    let key = key.to_ascii_lowercase();
    let last = key.rsplit(['_', '-']).next().unwrap_or_default();
    SECRET_WORDS.contains(&last) && key != "public_key"
}

/// Masks secrets in place. Every value of a `headers` table is masked (headers carry
/// credentials under many names); user information in URLs (`scheme://user:pass@host`) too.
fn mask(value: &mut Json, all: bool) {
    match value {
        Json::Object(map) => {
            for (key, value) in map.iter_mut() {
                let scalar = !matches!(value, Json::Object(_) | Json::Array(_));
                if scalar && (all || is_secret_key(key)) {
                    *value = Json::String(MASK.to_owned());
                } else {
                    mask(value, all || key == "headers");
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|item| mask(item, all)),
        Json::String(text) => {
            if let Some(masked) = mask_userinfo(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host/...` → `scheme://******@host/...`; `None` when there is none.
fn mask_userinfo(text: &str) -> Option<String> {
    let start = text.find("://")? + 3;
    let rest = text.get(start..)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest.get(..authority_end)?.rfind('@')?;
    Some(format!("{}{MASK}{}", text.get(..start)?, rest.get(at..)?))
}
