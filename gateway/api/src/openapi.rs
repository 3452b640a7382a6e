//! The OpenAPI 3.0 document served at `/api-docs`, built from the route table
//! ([`crate::routes::routes`]) plus, per route, what the table does not say: the query
//! parameters, the request body's schema, the answers it gives and the allowed values of path
//! parameters ([`details`]).
//!
//! The schemas say what the handlers accept, no more and no less: the test command runs
//! schemathesis against the live server (`interop-tests/test_api_schema.py`), which sends
//! requests the schemas allow (each must be accepted) and requests they forbid (each must be
//! refused with a 4xx). A handler that checks more than its schema says fails that run.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::paging::{MAX_LIMIT, MAX_PAGE};
use crate::routes::{RouteDoc, routes};

/// What one route adds to the document beyond its [`RouteDoc`].
#[derive(Default)]
struct Details {
    /// Query parameters: `(name, schema, description)`.
    query: Vec<(&'static str, Value, &'static str)>,
    /// The query parameters that must be given.
    required: &'static [&'static str],
    /// Allowed values of path parameters, by name.
    path: Vec<(&'static str, Value)>,
    /// The JSON body's schema, for routes that read one.
    body: Option<Value>,
    /// The body when it is not JSON: `(media type, schema)`.
    raw_body: Option<(&'static str, Value)>,
    /// The body may be left out.
    body_optional: bool,
    /// Success codes other than 200.
    success: Option<&'static [u16]>,
}

/// `page` and `limit`, as every paged list takes them.
fn paging() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "page",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            "Page number, from 1 (default 1)",
        ),
        (
            "limit",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
            "Page size (default 100)",
        ),
    ]
}

/// A free text filter.
fn text(name: &'static str, description: &'static str) -> (&'static str, Value, &'static str) {
    (name, json!({"type": "string"}), description)
}

fn boolean(name: &'static str, description: &'static str) -> (&'static str, Value, &'static str) {
    (name, json!({"type": "boolean"}), description)
}

/// A topic name as MQTT allows it in PUBLISH: no wildcard, no NUL, not empty.
fn topic_name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 65535, "pattern": "^[^#+\\u0000]+$"})
}

/// `schema` without its `maxLength`: for query parameters, where the HTTP layer refuses a
/// request line that long first (414).
fn in_query(mut schema: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.remove("maxLength");
    }
    schema
}

/// A topic filter: levels of text, `+` levels, an optional final `#`; no NUL. Written without
/// `$` so that no generated filter is a malformed `$share/...` (the handlers take shared
/// filters too).
fn topic_filter() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 65535,
        "pattern": "^(#|(\\+|[^#+/$\\u0000][^#+/\\u0000]*|)(/(\\+|[^#+/\\u0000]*))*(/#)?)$",
    })
}

/// An object whose handler ignores fields it does not know.
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

/// An object whose handler refuses fields it does not know (`deny_unknown_fields`).
fn closed(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties, "additionalProperties": false})
}

/// `schema` or `null` (an `Option` field: serde takes `null` as absent).
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.push(Value::Null);
    }
    schema
}

fn qos() -> Value {
    json!({"type": "integer", "enum": [0, 1, 2]})
}

fn rule() -> Value {
    closed(
        &["topic", "permission", "action"],
        json!({
            "topic": {"type": "string", "minLength": 1},
            "permission": {"type": "string", "enum": ["allow", "deny"]},
            "action": {"type": "string", "enum": ["publish", "subscribe", "all"]},
            "qos": nullable(json!({"oneOf": [qos(), {"type": "array", "items": qos()}]})),
            "retain": nullable(json!({"oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false", "all"]}]})),
        }),
    )
}

/// `{username | clientid, rules}` for the built-in authorization rules.
fn principal(key: &'static str) -> Value {
    object(
        &[key, "rules"],
        json!({key: nullable(json!({"type": "string", "minLength": 1})), "rules": {"type": "array", "items": rule()}}),
    )
}

fn subscription() -> Value {
    let flag = json!({"type": "integer", "enum": [0, 1]});
    closed(
        &["topic"],
        json!({"topic": topic_filter(), "qos": qos(), "nl": flag, "rap": flag, "rh": qos()}),
    )
}

fn publish() -> Value {
    closed(
        &["topic"],
        json!({
            "topic": topic_name(),
            "payload": {"type": "string"},
            "qos": qos(),
            "retain": {"type": "boolean"},
            "encoding": nullable(json!({"type": "string", "enum": ["plain"]})),
            "clientid": nullable(json!({"type": "string"})),
            "properties": nullable(closed(&[], json!({
                "payload_format_indicator": nullable(json!({"oneOf": [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]})),
                "message_expiry_interval": nullable(json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
                "content_type": nullable(json!({"type": "string"})),
                "response_topic": nullable(topic_name()),
                "correlation_data": nullable(json!({"type": "string"})),
                "user_properties": {"type": "object", "description": "name → value; a value that is not text is sent as its JSON"},
            }))),
        }),
    )
}

fn bulk(item: Value) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": 1000, "items": item})
}

/// An LwM2M path query parameter (`/3/0/7`).
fn lwm2m_path() -> (&'static str, Value, &'static str) {
    (
        "path",
        json!({"type": "string", "pattern": "^/"}),
        "Object path: /object[/instance[/resource]]",
    )
}

/// What the table does not say about `method path`.
fn details(method: &str, path: &str) -> Details {
    const CREATED: &[u16] = &[201];
    const NO_CONTENT: &[u16] = &[204];
    let mut d = Details::default();
    match (method, path) {
        ("POST", "/api/v5/login") => {
            d.body = Some(object(
                &["username", "password"],
                json!({"username": {"type": "string"}, "password": {"type": "string"}}),
            ));
        }
        ("POST", "/api/v5/logout") => d.success = Some(NO_CONTENT),
        ("POST", "/api/v5/users/{username}/change_pwd") => {
            d.body = Some(object(
                &["old_pwd", "new_pwd"],
                json!({"old_pwd": {"type": "string"}, "new_pwd": {"type": "string", "minLength": 8}}),
            ));
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/users") => {
            d.body = Some(closed(
                &["username", "password"],
                json!({
                    "username": {"type": "string", "minLength": 1},
                    "password": {"type": "string", "minLength": 8},
                    "description": {"type": "string"},
                    "role": nullable(json!({"type": "string", "enum": ["administrator"]})),
                }),
            ));
        }
        ("PUT", "/api/v5/users/{username}") => {
            d.body = Some(closed(
                &["description"],
                json!({
                    "description": {"type": "string"},
                    "role": nullable(json!({"type": "string", "enum": ["administrator"]})),
                }),
            ));
        }
        ("DELETE", "/api/v5/users/{username}") => d.success = Some(NO_CONTENT),
        ("POST", "/api/v5/api_key") => {
            d.body = Some(object(
                &["name"],
                json!({
                    "name": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9_-]+$"},
                    "desc": {"type": "string", "maxLength": 1024},
                    "enable": {"type": "boolean"},
                    "expired_at": nullable(json!({"type": "string", "enum": ["infinity"]})),
                }),
            ));
        }
        ("PUT", "/api/v5/api_key/{name}") => {
            d.body = Some(object(
                &[],
                json!({
                    "desc": nullable(json!({"type": "string", "maxLength": 1024})),
                    "enable": nullable(json!({"type": "boolean"})),
                    "expired_at": nullable(json!({"type": "string", "enum": ["infinity"]})),
                }),
            ));
        }
        ("DELETE", "/api/v5/api_key/{name}") => d.success = Some(NO_CONTENT),
        ("GET", "/api/v5/stats" | "/api/v5/metrics") => {
            d.query = vec![boolean(
                "aggregate",
                "One object for the cluster rather than one per node",
            )];
        }
        ("GET", "/api/v5/clients") => {
            d.query = paging();
            d.query.extend([
                text("clientid", "Exactly this client id"),
                text("username", "Exactly this user name"),
                text("ip_address", "Peer address"),
                (
                    "conn_state",
                    json!({"type": "string", "enum": ["connected", "disconnected"]}),
                    "Connected or not",
                ),
                text("proto_name", "Protocol name (MQTT, MQTT-SN, CoAP, LwM2M, STOMP)"),
                (
                    "proto_ver",
                    json!({"type": "integer", "minimum": 0, "maximum": 255}),
                    "Protocol version",
                ),
                boolean("clean_start", "Clean start flag"),
                text("like_clientid", "Client id contains"),
                text("like_username", "User name contains"),
            ]);
        }
        ("DELETE", "/api/v5/clients/{clientid}" | "/api/v5/clients/{clientid}/authorization/cache") => {
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/clients/{clientid}/subscribe") => d.body = Some(subscription()),
        ("POST", "/api/v5/clients/{clientid}/subscribe/bulk") => d.body = Some(bulk(subscription())),
        ("POST", "/api/v5/clients/{clientid}/unsubscribe") => {
            d.body = Some(closed(&["topic"], json!({"topic": topic_filter()})));
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/clients/{clientid}/unsubscribe/bulk") => {
            d.body = Some(bulk(closed(&["topic"], json!({"topic": topic_filter()}))));
            d.success = Some(NO_CONTENT);
        }
        ("GET", "/api/v5/subscriptions") => {
            d.query = paging();
            d.query.extend([
                text("clientid", "Exactly this client id"),
                text("topic", "Exactly this filter"),
                ("qos", qos(), "Subscription QoS"),
                text("share_group", "Shared subscription group"),
                ("match_topic", in_query(topic_name()), "Filters matching this topic"),
            ]);
        }
        ("GET", "/api/v5/topics") => {
            d.query = paging();
            d.query.extend([
                text("topic", "Exactly this filter"),
                text("node", "Only this node's routes"),
            ]);
        }
        ("GET", "/api/v5/mqtt/retainer/messages") => {
            d.query = paging();
            d.query.push((
                "topic",
                in_query(topic_filter()),
                "Only the messages whose topic this filter matches",
            ));
        }
        ("DELETE", "/api/v5/mqtt/retainer/messages" | "/api/v5/mqtt/retainer/message/{topic}") => {
            d.success = Some(NO_CONTENT);
        }
        ("GET", "/api/v5/banned") => {
            d.query = paging();
            d.query.extend([
                text("clientid", "Exactly this client id"),
                text("username", "Exactly this user name"),
                text("peerhost", "Exactly this address"),
                text("like_clientid", "Client id contains"),
                text("like_username", "User name contains"),
                text("like_peerhost", "Address contains"),
                text("like_peerhost_net", "Ranges containing this address"),
            ]);
        }
        ("POST", "/api/v5/banned") => {
            d.body = Some(closed(
                &["as", "who"],
                json!({
                    "as": {"type": "string", "enum": ["clientid", "username"]},
                    "who": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "by": nullable(json!({"type": "string", "maxLength": 1024})),
                    "reason": nullable(json!({"type": "string", "maxLength": 1024})),
                    "until": nullable(json!({"type": "string", "enum": ["infinity"]})),
                }),
            ));
        }
        ("DELETE", "/api/v5/banned/{as}/{who}") => {
            d.path = vec![(
                "as",
                json!({"type": "string", "enum": ["clientid", "username", "peerhost", "peerhost_net", "clientid_re", "username_re"]}),
            )];
            d.success = Some(NO_CONTENT);
        }
        ("DELETE", "/api/v5/banned" | "/api/v5/authorization/cache" | "/api/v5/alarms") => {
            d.success = Some(NO_CONTENT);
        }
        ("GET", "/api/v5/alarms") => {
            d.query = paging();
            d.query
                .push(boolean("activated", "true: the active alarms; false: the history"));
        }
        ("POST", "/api/v5/publish") => {
            d.body = Some(publish());
            d.success = Some(&[200, 202]);
        }
        ("POST", "/api/v5/publish/bulk") => d.body = Some(bulk(publish())),
        ("GET", "/api/v5/gateways") => {
            d.query = vec![(
                "status",
                json!({"type": "string", "enum": ["running", "stopped"]}),
                "Only gateways in this state",
            )];
        }
        ("PUT", "/api/v5/gateways/{name}/enable/{enable}") => {
            d.path = vec![("enable", json!({"type": "string", "enum": ["true", "false"]}))];
            d.success = Some(NO_CONTENT);
        }
        ("GET", "/api/v5/gateways/{name}/clients") => {
            d.query = paging();
            d.query.extend([
                text("clientid", "Exactly this client id"),
                text("username", "Exactly this user name"),
                text("ip_address", "Peer address"),
                text("like_clientid", "Client id contains"),
                text("like_username", "User name contains"),
            ]);
        }
        ("DELETE", "/api/v5/gateways/{name}/clients/{clientid}") => d.success = Some(NO_CONTENT),
        ("GET", "/api/v5/gateways/{name}/clients/{clientid}/lookup") => {
            d.query = vec![
                lwm2m_path(),
                text("action", "The command: read, write, observe, discover, ..."),
            ];
            d.required = &["path", "action"];
        }
        ("POST", "/api/v5/gateways/{name}/clients/{clientid}/read") => {
            d.query = vec![lwm2m_path()];
            d.required = &["path"];
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/gateways/{name}/clients/{clientid}/write") => {
            d.query = vec![
                lwm2m_path(),
                (
                    "type",
                    json!({"type": "string", "enum": crate::handlers::lwm2m::DATA_TYPES}),
                    "The value's type",
                ),
                text("value", "The value"),
            ];
            d.required = &["path", "type", "value"];
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/gateways/{name}/clients/{clientid}/observe") => {
            d.query = vec![
                lwm2m_path(),
                (
                    "enable",
                    json!({"type": "string", "enum": ["true", "false", "1", "0"]}),
                    "Start or stop",
                ),
            ];
            d.required = &["path", "enable"];
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/configs/reload") => {}
        ("POST", "/api/v5/listeners/{id}/{action}") => {
            d.path = vec![(
                "action",
                json!({"type": "string", "enum": ["start", "stop", "restart"]}),
            )];
        }
        ("POST", "/api/v5/psk") => {
            d.body = Some(closed(
                &["identity", "key"],
                json!({
                    "identity": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "key": {"type": "string", "minLength": 1, "maxLength": 1024},
                }),
            ));
            d.success = Some(CREATED);
        }
        ("DELETE", "/api/v5/psk/{identity}") => d.success = Some(NO_CONTENT),
        ("GET", "/api/v5/authentication/{id}/users") => {
            d.query = paging();
            d.query.extend([
                text("like_user_id", "User id contains"),
                boolean("is_superuser", "Only superusers, or only others"),
            ]);
        }
        ("POST", "/api/v5/authentication/{id}/users") => {
            d.body = Some(object(
                &["user_id", "password"],
                json!({
                    "user_id": {"type": "string", "minLength": 1, "maxLength": 256},
                    "password": {"type": "string", "minLength": 1, "maxLength": 4096},
                    "is_superuser": {"type": "boolean"},
                }),
            ));
            d.success = Some(CREATED);
        }
        ("PUT", "/api/v5/authentication/{id}/users/{user_id}") => {
            d.body = Some(object(
                &[],
                json!({
                    "password": nullable(json!({"type": "string", "minLength": 1, "maxLength": 4096})),
                    "is_superuser": nullable(json!({"type": "boolean"})),
                }),
            ));
        }
        ("DELETE", "/api/v5/authentication/{id}/users/{user_id}") => d.success = Some(NO_CONTENT),
        ("POST", "/api/v5/authentication/{id}/import_users") => {
            d.required = &["type"];
            d.query = vec![(
                "type",
                json!({"type": "string", "enum": ["plain", "hash"]}),
                "plain: passwords in clear; hash: password_hash and salt",
            )];
            d.raw_body = Some(("text/csv", json!({"type": "string"})));
        }
        ("GET", "/api/v5/authorization/sources/built_in_database/rules/users") => {
            d.query = paging();
            d.query.push(text("like_username", "User name contains"));
        }
        ("GET", "/api/v5/authorization/sources/built_in_database/rules/clients") => {
            d.query = paging();
            d.query.push(text("like_clientid", "Client id contains"));
        }
        ("POST", "/api/v5/authorization/sources/built_in_database/rules/users") => {
            d.body = Some(bulk(principal("username")));
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/authorization/sources/built_in_database/rules/clients") => {
            d.body = Some(bulk(principal("clientid")));
            d.success = Some(NO_CONTENT);
        }
        ("PUT", "/api/v5/authorization/sources/built_in_database/rules/users/{username}") => {
            d.body = Some(principal("username"));
            d.success = Some(NO_CONTENT);
        }
        ("PUT", "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}") => {
            d.body = Some(principal("clientid"));
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/authorization/sources/built_in_database/rules/all") => {
            d.body = Some(object(&["rules"], json!({"rules": {"type": "array", "items": rule()}})));
            d.success = Some(NO_CONTENT);
        }
        (
            "DELETE",
            "/api/v5/authorization/sources/built_in_database/rules/users/{username}"
            | "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}"
            | "/api/v5/authorization/sources/built_in_database/rules/all",
        ) => d.success = Some(NO_CONTENT),
        ("POST", "/api/v5/trace") => {
            // One shape per type; times are left out (a generated time is likely past).
            let shape = |kind: &str, value: Value| {
                object(
                    &["name", "type", kind],
                    json!({
                        "name": trace_name(),
                        "type": {"type": "string", "enum": [kind]},
                        kind: value,
                        "payload_encode": nullable(json!({"type": "string", "enum": ["text", "hex", "hidden"]})),
                        "formatter": nullable(json!({"type": "string", "enum": ["text", "json"]})),
                    }),
                )
            };
            d.body = Some(json!({"oneOf": [
                shape("clientid", json!({"type": "string", "minLength": 1, "maxLength": 65535})),
                shape("topic", topic_filter()),
                shape("ip_address", json!({"type": "string", "format": "ipv4"})),
            ]}));
        }
        ("DELETE", "/api/v5/trace") => d.success = Some(NO_CONTENT),
        ("DELETE", "/api/v5/trace/{name}") => {
            d.path = vec![("name", trace_name())];
            d.success = Some(NO_CONTENT);
        }
        ("PUT", "/api/v5/trace/{name}/stop") | ("GET", "/api/v5/trace/{name}/download") => {
            d.path = vec![("name", trace_name())];
        }
        ("GET", "/api/v5/trace/{name}/log") => {
            d.path = vec![("name", trace_name())];
            d.query = vec![
                (
                    "bytes",
                    json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
                    "At most this many bytes (≤ 1 MiB)",
                ),
                (
                    "position",
                    json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
                    "From this byte of the file",
                ),
            ];
        }
        ("POST", "/api/v5/data/export") => {
            let tables = json!({"type": "string", "enum": crate::backup::tables::ALL});
            d.body = Some(closed(
                &[],
                json!({"table_sets": nullable(json!({"type": "array", "items": tables}))}),
            ));
            d.body_optional = true;
        }
        ("GET", "/api/v5/data/files") => d.query = paging(),
        ("POST", "/api/v5/data/files") => {
            d.raw_body = Some((
                "multipart/form-data",
                object(
                    &["filename"],
                    json!({"filename": {"type": "string", "format": "binary"}}),
                ),
            ));
            d.success = Some(NO_CONTENT);
        }
        ("GET" | "DELETE", "/api/v5/data/files/{filename}") => {
            d.path = vec![("filename", backup_name())];
            if method == "DELETE" {
                d.success = Some(NO_CONTENT);
            }
        }
        ("POST", "/api/v5/data/import") => {
            d.body = Some(closed(&["filename"], json!({"filename": backup_name()})));
            d.success = Some(NO_CONTENT);
        }
        ("PUT", "/api/v5/users/{username}/password") => {
            d.body = Some(closed(
                &["password"],
                json!({"password": {"type": "string", "minLength": 8}}),
            ));
            d.success = Some(NO_CONTENT);
        }
        ("PUT", "/api/v5/gateways/{name}") => {
            // The gateway's configuration section: whether it is valid is the configuration
            // loader's to say (400 with the keys named), not a schema's.
            d.body = Some(json!({"type": "object"}));
            d.success = Some(NO_CONTENT);
        }
        ("DELETE", "/api/v5/gateways/{name}" | "/api/v5/gateways/{name}/listeners/{id}") => {
            d.success = Some(NO_CONTENT);
        }
        ("POST", "/api/v5/gateways/{name}/listeners") => {
            d.body = Some(object(
                &["type", "name"],
                json!({"type": {"type": "string"}, "name": {"type": "string"}}),
            ));
            d.success = Some(CREATED);
        }
        ("PUT", "/api/v5/gateways/{name}/listeners/{id}") => d.body = Some(json!({"type": "object"})),
        ("POST", "/api/v5/gateways/{name}/clients/{clientid}/request") => {
            // A subset of what is accepted (EMQX's shape; see docs/api.md for the rest).
            d.body = Some(closed(
                &[],
                json!({
                    "token": nullable(json!({"type": "string", "pattern": "^[ -~]{0,8}$"})),
                    "method": nullable(json!({"type": "string", "enum": ["get", "put", "post", "delete"]})),
                    "uri_path": nullable(json!({"type": "string", "pattern": "^[A-Za-z0-9._~-]{1,32}(/[A-Za-z0-9._~-]{1,32}){0,7}$"})),
                    "timeout": nullable(json!({"oneOf": [
                        {"type": "integer", "minimum": 1, "maximum": 60000},
                        {"type": "string", "pattern": "^([1-9][0-9]{0,3}ms|[1-9]s)$"},
                    ]})),
                    "content_type": nullable(json!({"type": "string", "enum": ["text/plain", "application/json"]})),
                    "payload": nullable(json!({"type": "string"})),
                }),
            ));
        }
        _ => {}
    }
    d
}

/// A log trace's name.
fn trace_name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+$"})
}

/// A backup file's name: `[A-Za-z0-9_-]` words joined by single dots, ending in `.tar.gz`.
fn backup_name() -> Value {
    json!({
        "type": "string",
        "maxLength": 255,
        "pattern": "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.tar\\.gz$",
    })
}

/// The OpenAPI operation of one route.
fn operation(doc: &RouteDoc) -> Value {
    let details = details(doc.method, doc.path);
    let mut parameters: Vec<Value> = doc
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = details
                .path
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(|| json!({"type": "string"}), |(_, schema)| schema.clone());
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    parameters.extend(details.query.into_iter().map(|(name, schema, description)| {
        json!({
            "name": name,
            "in": "query",
            "required": details.required.contains(&name),
            "schema": schema,
            "description": description,
        })
    }));
    let mut responses = Map::new();
    for code in details.success.unwrap_or(&[200]) {
        let description = match code {
            201 => "created",
            204 => "done, no body",
            _ => "success",
        };
        responses.insert(code.to_string(), json!({"description": description}));
    }
    responses.insert("400".into(), json!({"description": "bad request: {code, message}"}));
    responses.insert("404".into(), json!({"description": "not found: {code, message}"}));
    responses.insert("414".into(), json!({"description": "URI too long"}));
    let mut operation = json!({
        "summary": doc.summary,
        "tags": [doc.tag],
        "parameters": parameters,
    });
    if let Some(schema) = details.body {
        operation["requestBody"] = json!({
            "required": !details.body_optional,
            "content": {"application/json": {"schema": schema}},
        });
        responses.insert("413".into(), json!({"description": "body too large"}));
        responses.insert("415".into(), json!({"description": "the body is not application/json"}));
    }
    if let Some((media, schema)) = details.raw_body {
        operation["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
        responses.insert("413".into(), json!({"description": "body too large"}));
    }
    if doc.auth {
        operation["security"] = json!([{"bearerAuth": []}, {"basicAuth": []}]);
        responses.insert("401".into(), json!({"description": "authentication failed"}));
        responses.insert(
            "403".into(),
            json!({"description": "not allowed with these credentials (API keys cannot manage users and keys)"}),
        );
        responses.insert("409".into(), json!({"description": "conflicts with the current state"}));
    } else {
        operation["security"] = json!([]);
    }
    if doc.path == "/api/v5/login" {
        responses.insert("401".into(), json!({"description": "bad user name or password"}));
        responses.insert(
            "429".into(),
            json!({"description": "user name locked after failed logins"}),
        );
    }
    operation["responses"] = Value::Object(responses);
    operation
}

/// The OpenAPI 3.0 document of every route in the table.
pub fn openapi() -> Value {
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for doc in routes() {
        paths
            .entry(doc.path)
            .or_default()
            .insert(doc.method.to_ascii_lowercase(), operation(doc));
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Portico HTTP API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
            "basicAuth": {"type": "http", "scheme": "basic"},
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes that take no body although their method could carry one.
    const BODYLESS: [&str; 8] = [
        "/api/v5/trace/{name}/stop",
        "/api/v5/logout",
        "/api/v5/gateways/{name}/enable/{enable}",
        "/api/v5/configs/reload",
        "/api/v5/listeners/{id}/{action}",
        "/api/v5/gateways/{name}/clients/{clientid}/read",
        "/api/v5/gateways/{name}/clients/{clientid}/write",
        "/api/v5/gateways/{name}/clients/{clientid}/observe",
    ];

    #[test]
    fn every_route_that_reads_a_body_documents_it() {
        let doc = openapi();
        for route in routes().filter(|r| matches!(r.method, "POST" | "PUT")) {
            let operation = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
            let has_body = operation.get("requestBody").is_some();
            assert_eq!(
                has_body,
                !BODYLESS.contains(&route.path),
                "{} {}: request body documented: {has_body}",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn path_parameter_schemas_name_real_parameters() {
        for route in routes() {
            for (name, _) in details(route.method, route.path).path {
                assert!(
                    route.path.contains(&format!("{{{name}}}")),
                    "{} {}: no parameter {name}",
                    route.method,
                    route.path
                );
            }
        }
    }

    #[test]
    fn success_codes_are_listed_and_errors_documented() {
        let doc = openapi();
        let delete = &doc["paths"]["/api/v5/banned/{as}/{who}"]["delete"];
        assert!(delete["responses"]["204"].is_object());
        assert!(delete["responses"]["200"].is_null());
        assert_eq!(delete["parameters"][0]["schema"]["enum"][0], "clientid");
        let clients = &doc["paths"]["/api/v5/clients"]["get"];
        let names: Vec<&str> = clients["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"page") && names.contains(&"like_clientid"), "{names:?}");
    }
}
