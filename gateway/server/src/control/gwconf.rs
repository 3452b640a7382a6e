//! A gateway's configuration changed through the API (`PUT|DELETE /gateways/{name}`, its
//! listeners): the EMQX-shaped JSON body mapped onto `gateway.<name>`, merged into the
//! API-override layer, validated by loading the whole configuration again (so the errors are
//! the file's, naming the key), then applied by restarting that gateway and saved to
//! `{node.data_dir}/configs/api.toml`.
//!
//! Choices:
//! - A body changes the keys it gives; the others keep their value (from the file or an
//!   earlier change). A listener not named in a `PUT /gateways/{name}` body keeps running:
//!   removing one is `DELETE /gateways/{name}/listeners/{id}`.
//! - Unloading keeps the configuration and saves `enable = false` (EMQX deletes it), so a
//!   later `PUT` with `"enable": true` brings the same settings back; the file's settings could
//!   not be deleted from the API anyway.
//! - Removing a listener drops what the API set for it; if the file or the defaults still
//!   define it, it is saved as `enable = false`.
//! - A key set by a `PORTICO_*` variable cannot be changed (the environment wins over the
//!   override layer, so the change would never take effect): 400 naming the variable.

use portico_api::{ConfigChangeError, ConfigProblem, GatewayChange};
use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use super::{ServerControl, problems};
use crate::config::{Config, env_conflicts, merge_tables, write_api_overrides};
use crate::gateways;

/// Fields of EMQX's listener objects that name it rather than configure it.
const LISTENER_NAMING: [&str; 3] = ["type", "name", "id"];

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigChangeError {
    ConfigChangeError::Invalid(vec![ConfigProblem {
        key: key.into(),
        reason: reason.into(),
    }])
}

/// A JSON value as TOML; `None` for `null` (the key is left out).
fn to_toml(json: &Json, key: &str) -> Result<Option<Value>, ConfigChangeError> {
    Ok(Some(match json {
        Json::Null => return Ok(None),
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Integer(i),
            (None, Some(f)) if n.is_f64() => Value::Float(f),
            _ => return Err(invalid(key, format!("{key}: {n} is out of range"))),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_key = format!("{key}[{i}]");
                match to_toml(item, &item_key)? {
                    Some(v) => out.push(v),
                    None => return Err(invalid(&item_key, format!("{item_key}: null is not a value"))),
                }
            }
            Value::Array(out)
        }
        Json::Object(map) => Value::Table(object_to_table(map, key)?),
    }))
}

fn object_to_table(map: &Map<String, Json>, key: &str) -> Result<Table, ConfigChangeError> {
    let mut table = Table::new();
    for (k, v) in map {
        if let Some(v) = to_toml(v, &format!("{key}.{k}"))? {
            table.insert(k.clone(), v);
        }
    }
    Ok(table)
}

/// A listener object's `type` and `name` (strings, required).
fn listener_naming(map: &Map<String, Json>, key: &str) -> Result<(String, String), ConfigChangeError> {
    let field = |field: &str| match map.get(field) {
        Some(Json::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(invalid(
            format!("{key}.{field}"),
            format!("{key}.{field}: expected a non-empty string"),
        )),
        None => Err(invalid(format!("{key}.{field}"), format!("{key}.{field}: missing"))),
    };
    Ok((field("type")?, field("name")?))
}

/// A listener object's settings: everything but its naming fields.
fn listener_settings(map: &Map<String, Json>, key: &str) -> Result<Table, ConfigChangeError> {
    let mut settings = map.clone();
    for field in LISTENER_NAMING {
        settings.remove(field);
    }
    object_to_table(&settings, key)
}

/// `listeners.<type>.<name>` of a section table, created on the way.
fn listener_slot<'t>(section: &'t mut Table, kind: &str, name: &str) -> Result<&'t mut Table, ConfigChangeError> {
    sub_table(sub_table(sub_table(section, "listeners")?, kind)?, name)
}

/// `table[key]` as a table, created if missing; an error if something else is there (a
/// hand-edited override file).
fn sub_table<'t>(table: &'t mut Table, key: &str) -> Result<&'t mut Table, ConfigChangeError> {
    match table
        .entry(key.to_owned())
        .or_insert_with(|| Value::Table(Table::new()))
    {
        Value::Table(t) => Ok(t),
        other => Err(invalid(
            key,
            format!(
                "{key}: expected a table, found {} (API override file)",
                other.type_str()
            ),
        )),
    }
}

/// The `PUT /gateways/{name}` body as `gateway.<name>`'s table: EMQX's list of listeners
/// `[{type, name, ...}]` becomes `listeners.<type>.<name>`; a `name` field must be the gateway's.
fn gateway_body(gateway: &str, body: &Map<String, Json>) -> Result<Table, ConfigChangeError> {
    let base = format!("gateway.{gateway}");
    let mut body = body.clone();
    match body.remove("name") {
        None => {}
        Some(Json::String(n)) if n == gateway => {}
        Some(other) => {
            return Err(invalid(
                format!("{base}.name"),
                format!("{base}.name: {other} does not match the gateway in the path ({gateway:?})"),
            ));
        }
    }
    let listeners = body.remove("listeners");
    let mut table = object_to_table(&body, &base)?;
    match listeners {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let key = format!("{base}.listeners[{i}]");
                let Json::Object(map) = item else {
                    return Err(invalid(&key, format!("{key}: expected an object")));
                };
                let (kind, name) = listener_naming(map, &key)?;
                let settings = listener_settings(map, &format!("{base}.listeners.{kind}.{name}"))?;
                merge_tables(listener_slot(&mut table, &kind, &name)?, &settings);
            }
        }
        Some(Json::Object(map)) => {
            let key = format!("{base}.listeners");
            table.insert("listeners".to_owned(), Value::Table(object_to_table(&map, &key)?));
        }
        Some(_) => {
            let key = format!("{base}.listeners");
            return Err(invalid(
                &key,
                format!("{key}: expected a list of listeners ([{{\"type\": \"udp\", \"name\": \"default\", ...}}])"),
            ));
        }
    }
    Ok(table)
}

/// `(type, name)` of a listener id: `coap:udp:default` or `udp:default` for gateway `coap`.
fn parse_listener_id(gateway: &str, id: &str) -> Result<(String, String), ConfigChangeError> {
    let rest = id.strip_prefix(&format!("{gateway}:")).unwrap_or(id);
    match rest.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() && !name.contains(':') => {
            Ok((kind.to_owned(), name.to_owned()))
        }
        _ => Err(ConfigChangeError::NotFound(format!(
            "no listener {id:?}: expected an id such as {gateway}:udp:default"
        ))),
    }
}

/// True when `config` has listener `kind:name` of `gateway` enabled.
fn has_listener(config: &Config, gateway: &str, kind: &str, name: &str) -> bool {
    gateways::configured_listeners(config, gateway)
        .iter()
        .any(|(_, k, n, _)| *k == kind && n == name)
}

/// Removes `listeners.<kind>.<name>` from a section table, and the tables it leaves empty.
fn remove_listener(section: &mut Table, kind: &str, name: &str) {
    let Some(Value::Table(listeners)) = section.get_mut("listeners") else {
        return;
    };
    if let Some(Value::Table(by_kind)) = listeners.get_mut(kind) {
        by_kind.remove(name);
        if by_kind.is_empty() {
            listeners.remove(kind);
        }
    }
    if listeners.is_empty() {
        section.remove("listeners");
    }
}

/// Copies gateway `name`'s settings from `from` into `into`.
fn copy_gateway(into: &mut Config, from: &Config, name: &str) {
    let (to, from) = (&mut into.gateway, &from.gateway);
    match name {
        "mqttsn" => to.mqttsn = from.mqttsn.clone(),
        "coap" => to.coap = from.coap.clone(),
        "lwm2m" => to.lwm2m = from.lwm2m.clone(),
        "stomp" => to.stomp = from.stomp.clone(),
        _ => {}
    }
}

impl ServerControl {
    /// See the module docs.
    pub(super) async fn change_gateway_config(
        &self,
        name: &str,
        change: GatewayChange,
    ) -> Result<(), ConfigChangeError> {
        let Some(name) = gateways::NAMES.iter().copied().find(|n| *n == name) else {
            return Err(ConfigChangeError::NotFound(format!("no gateway named {name:?}")));
        };
        let mut state = self.state.lock().await;
        let source = state.config.source.clone();
        let mut api = source.api.clone();
        let section = sub_table(sub_table(&mut api, "gateway")?, name)?;
        let base = format!("gateway.{name}");
        match change {
            GatewayChange::Update(body) => merge_tables(section, &gateway_body(name, &body)?),
            GatewayChange::Unload => {
                section.insert("enable".to_owned(), Value::Boolean(false));
            }
            GatewayChange::AddListener(body) => {
                let (kind, listener) = listener_naming(&body, &format!("{base}.listeners"))?;
                if has_listener(&state.config, name, &kind, &listener) {
                    return Err(invalid(
                        format!("{base}.listeners.{kind}.{listener}"),
                        format!("listener {name}:{kind}:{listener} already exists; change it with PUT"),
                    ));
                }
                let settings = listener_settings(&body, &format!("{base}.listeners.{kind}.{listener}"))?;
                let slot = listener_slot(section, &kind, &listener)?;
                merge_tables(slot, &settings);
                // Adding a listener that the file has switched off switches it on.
                slot.entry("enable".to_owned()).or_insert(Value::Boolean(true));
            }
            GatewayChange::UpdateListener(id, body) => {
                let (kind, listener) = parse_listener_id(name, &id)?;
                if !has_listener(&state.config, name, &kind, &listener) {
                    return Err(ConfigChangeError::NotFound(format!(
                        "no listener {name}:{kind}:{listener}"
                    )));
                }
                for (field, expected) in [("type", &kind), ("name", &listener)] {
                    if let Some(given) = body.get(field)
                        && given.as_str() != Some(expected.as_str())
                    {
                        let key = format!("{base}.listeners.{kind}.{listener}.{field}");
                        return Err(invalid(
                            &key,
                            format!("{key}: {given} does not match the listener id {id:?}"),
                        ));
                    }
                }
                let settings = listener_settings(&body, &format!("{base}.listeners.{kind}.{listener}"))?;
                merge_tables(listener_slot(section, &kind, &listener)?, &settings);
            }
            GatewayChange::RemoveListener(id) => {
                let (kind, listener) = parse_listener_id(name, &id)?;
                if !has_listener(&state.config, name, &kind, &listener) {
                    return Err(ConfigChangeError::NotFound(format!(
                        "no listener {name}:{kind}:{listener}"
                    )));
                }
                remove_listener(section, &kind, &listener);
                // Still defined by the file or the defaults: switch it off instead.
                if let Ok(without) = source.load_with_api(api.clone())
                    && has_listener(&without, name, &kind, &listener)
                {
                    let section = sub_table(sub_table(&mut api, "gateway")?, name)?;
                    listener_slot(section, &kind, &listener)?.insert("enable".to_owned(), Value::Boolean(false));
                }
            }
        }
        let conflicts = env_conflicts(&source.api, &api, &source.env_vars());
        if !conflicts.is_empty() {
            return Err(ConfigChangeError::Invalid(
                conflicts
                    .into_iter()
                    .map(|(var, key)| ConfigProblem {
                        reason: format!(
                            "env {var}: sets {key}, and the environment wins over API changes; change or unset the variable instead"
                        ),
                        key: var,
                    })
                    .collect(),
            ));
        }
        let candidate = source
            .load_with_api(api.clone())
            .map_err(|errors| ConfigChangeError::Invalid(problems(&errors)))?;

        // Apply: stop, then start with the new settings; on failure the old ones come back.
        let was_running = state.gateways.contains_key(name);
        let previous = state.config.clone();
        if was_running {
            self.stop_gateway(&mut state, name);
        }
        copy_gateway(&mut state.config, &candidate, name);
        if gateways::enabled(&state.config, name)
            && let Err(error) = self.start_gateway(&mut state, name).await
        {
            copy_gateway(&mut state.config, &previous, name);
            let restored = if was_running {
                match self.start_gateway(&mut state, name).await {
                    Ok(()) => "it runs again with its previous configuration".to_owned(),
                    Err(again) => format!("its previous configuration did not start either ({again})"),
                }
            } else {
                "it stays stopped".to_owned()
            };
            self.refresh(&state);
            return Err(ConfigChangeError::Failed(format!(
                "{error}: the new configuration was not saved; {restored}"
            )));
        }
        let saved = write_api_overrides(&source.api_path, &api);
        state.config.source.api = api;
        state.config.source.tree = candidate.source.tree.clone();
        self.refresh(&state);
        saved.map_err(|error| {
            ConfigChangeError::Failed(format!(
                "applied, but not saved (it will not survive a restart): cannot write {}: {error}",
                source.api_path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn emqx_listener_lists_become_tables() {
        let body = map(json!({
            "name": "coap",
            "enable": true,
            "connection_required": true,
            "heartbeat": null,
            "listeners": [{"type": "udp", "name": "default", "id": "coap:udp:default", "bind": "5690"}],
        }));
        let table = gateway_body("coap", &body).expect("valid body");
        let expected: Table =
            toml::from_str("enable = true\nconnection_required = true\n[listeners.udp.default]\nbind = \"5690\"\n")
                .expect("toml");
        assert_eq!(table, expected);
    }

    #[test]
    fn bad_listener_entries_name_the_key() {
        let body = map(json!({"listeners": [{"type": "udp"}]}));
        match gateway_body("coap", &body) {
            Err(ConfigChangeError::Invalid(problems)) => {
                assert_eq!(problems[0].key, "gateway.coap.listeners[0].name");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        let body = map(json!({"name": "stomp"}));
        assert!(matches!(
            gateway_body("coap", &body),
            Err(ConfigChangeError::Invalid(_))
        ));
    }

    #[test]
    fn listener_ids_with_or_without_the_gateway() {
        let udp = ("udp".to_owned(), "default".to_owned());
        assert_eq!(parse_listener_id("coap", "coap:udp:default").ok(), Some(udp.clone()));
        assert_eq!(parse_listener_id("coap", "udp:default").ok(), Some(udp));
        assert!(parse_listener_id("coap", "udp").is_err());
        assert!(parse_listener_id("coap", "stomp:tcp:default").is_err());
    }

    #[test]
    fn removing_a_listener_prunes_empty_tables() {
        let mut section: Table = toml::from_str("enable = true\n[listeners.udp.extra]\nbind = 1\n").expect("toml");
        remove_listener(&mut section, "udp", "extra");
        let expected: Table = toml::from_str("enable = true\n").expect("toml");
        assert_eq!(section, expected);
    }
}
