#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::env::{self, EnvOrigin};
use super::value;
use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Writes `contents` to a file unique to this test process and test name.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("portico-config-test-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn load_str(name: &str, contents: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let path = temp_file(name, contents);
    let result = Config::load(Some(&path), vars(env));
    let _ = std::fs::remove_file(&path);
    result
}

fn errors_of(result: Result<Config, ConfigErrors>) -> ConfigErrors {
    match result {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(e) => e,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_without_file_or_env() {
    let env = vars(&[
        ("HOME", "/root"),
        ("PORTICO_CONFIG", "x.toml"),
        ("PORTICO_LOG", "debug"),
    ]);
    let config = Config::load(None, env).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.mqtt.max_packet_size, 1024 * 1024);
    assert_eq!(config.mqtt.idle_timeout, Some(Duration::from_secs(15)));
    assert_eq!(config.mqtt.session_expiry_interval, Duration::from_secs(7200));
    assert_eq!(config.mqtt.max_subscriptions, usize::MAX);
    assert_eq!(config.listeners.tcp.len(), 1);
    assert_eq!(config.listeners.tcp["default"].bind, addr("0.0.0.0:1883"));
    assert_eq!(config.log.console.level, LogLevel::Warning);
    assert_eq!(config.log.console.level.tracing_directive(), "warn");
}

#[test]
fn shipped_file_equals_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/portico.toml");
    let config = Config::load(Some(&path), []).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn env_overrides_win_over_file() {
    let file = r#"
        [mqtt]
        max_inflight = 10
        retain_available = false
        [listeners.tcp.default]
        bind = "127.0.0.1:1883"
        mountpoint = "tenant/"
    "#;
    let env = [
        ("PORTICO_MQTT__MAX_INFLIGHT", "64"),
        ("PORTICO_LOG__CONSOLE__LEVEL", "debug"),
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:21883"),
        ("PORTICO_MQTT__IDLE_TIMEOUT", "infinity"),
        ("OTHER", "ignored"),
    ];
    let config = load_str("layering", file, &env).unwrap();
    assert_eq!(config.mqtt.max_inflight, 64);
    assert!(!config.mqtt.retain_available, "file value without override is kept");
    assert_eq!(config.log.console.level, LogLevel::Debug);
    assert_eq!(config.mqtt.idle_timeout, None);
    let listener = &config.listeners.tcp["default"];
    assert_eq!(listener.bind, addr("127.0.0.1:21883"));
    assert_eq!(listener.mountpoint, "tenant/");
}

#[test]
fn env_sets_nested_key_without_file() {
    let config = Config::load(
        None,
        vars(&[("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:21883")]),
    )
    .unwrap();
    let expected = TcpListenerConfig {
        bind: addr("127.0.0.1:21883"),
        ..TcpListenerConfig::default()
    };
    assert_eq!(config.listeners.tcp.len(), 1);
    assert_eq!(config.listeners.tcp["default"], expected);
}

#[test]
fn env_raw_text_is_used_for_string_keys() {
    // `12345` parses as a TOML integer, but the cookie is a string: the raw text is meant.
    let config = Config::load(None, vars(&[("PORTICO_NODE__COOKIE", "12345")])).unwrap();
    assert_eq!(config.node.cookie, "12345");
}

#[test]
fn env_key_parts() {
    assert_eq!(
        env::key_parts("PORTICO_MQTT__MAX_INFLIGHT"),
        Some(Ok(vec!["mqtt".to_owned(), "max_inflight".to_owned()]))
    );
    assert_eq!(env::key_parts("PORTICO_CONFIG"), None);
    assert_eq!(env::key_parts("PORTICO_LOG"), None);
    assert_eq!(env::key_parts("HOME"), None);
    assert!(matches!(env::key_parts("PORTICO_MQTT____X"), Some(Err(_))));
    assert!(matches!(env::key_parts("PORTICO_"), Some(Err(_))));
}

#[test]
fn env_values_parse_as_toml_or_string() {
    assert_eq!(env::parse_value("64"), Value::Integer(64));
    assert_eq!(env::parse_value("true"), Value::Boolean(true));
    assert_eq!(env::parse_value("\"x\""), Value::String("x".to_owned()));
    assert_eq!(
        env::parse_value("[1, 2]"),
        Value::Array(vec![Value::Integer(1), Value::Integer(2)])
    );
    assert_eq!(
        env::parse_value("127.0.0.1:1883"),
        Value::String("127.0.0.1:1883".to_owned())
    );
    assert_eq!(env::parse_value("15s"), Value::String("15s".to_owned()));
    assert_eq!(env::parse_value("1\nv2 = 2"), Value::String("1\nv2 = 2".to_owned()));
    assert_eq!(env::parse_value(""), Value::String(String::new()));
}

fn set(root: &mut Value, var: &str, raw: &str) -> Result<String, String> {
    let parts = env::key_parts(var).unwrap()?;
    env::set_path(root, &parts, env::parse_value(raw), &mut Vec::new())
}

#[test]
fn env_path_addresses_one_based_array_indexes() {
    let mut root: Value = toml::from_str(
        r#"
        [[authorization.sources]]
        type = "file"
        path = "acl.conf"
        "#,
    )
    .unwrap();
    assert_eq!(
        set(&mut root, "PORTICO_AUTHORIZATION__SOURCES__1__PATH", "/etc/acl.conf"),
        Ok("authorization.sources[0].path".to_owned())
    );
    // len + 1 appends a new table.
    assert_eq!(
        set(&mut root, "PORTICO_AUTHORIZATION__SOURCES__2__TYPE", "\"http\""),
        Ok("authorization.sources[1].type".to_owned())
    );
    let sources = root["authorization"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["path"].as_str(), Some("/etc/acl.conf"));
    assert_eq!(sources[0]["type"].as_str(), Some("file"));
    assert_eq!(sources[1]["type"].as_str(), Some("http"));

    // Index 0, a gap past len + 1 and a non-index part under an array are errors.
    assert!(set(&mut root, "PORTICO_AUTHORIZATION__SOURCES__0__PATH", "x").is_err());
    assert!(set(&mut root, "PORTICO_AUTHORIZATION__SOURCES__4__PATH", "x").is_err());
    assert!(set(&mut root, "PORTICO_AUTHORIZATION__SOURCES__PATH", "x").is_err());
    // Cannot descend into a scalar.
    let err = set(&mut root, "PORTICO_AUTHORIZATION__SOURCES__1__PATH__X", "x").unwrap_err();
    assert!(err.contains("authorization.sources[0].path"), "{err}");

    // A missing array is created by index 1; a whole element can be replaced.
    let mut fresh = Value::Table(toml::Table::new());
    assert_eq!(set(&mut fresh, "PORTICO_A__LIST__1", "7"), Ok("a.list[0]".to_owned()));
    assert_eq!(set(&mut fresh, "PORTICO_A__LIST__1", "8"), Ok("a.list[0]".to_owned()));
    assert_eq!(fresh["a"]["list"], Value::Array(vec![Value::Integer(8)]));
}

#[test]
fn env_indexes_apply_in_numeric_order() {
    let mut root = Value::Table(toml::Table::new());
    let mut origins = std::collections::HashMap::new();
    let mut errors = Vec::new();
    let env: Vec<(String, String)> = (1..=11)
        .rev()
        .map(|i| (format!("PORTICO_L__{i}"), i.to_string()))
        .collect();
    env::apply(&mut root, env, &mut origins, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let list = root["l"].as_array().unwrap();
    assert_eq!(list.len(), 11);
    assert_eq!(list[9], Value::Integer(10));
    assert_eq!(
        origins.get("l[9]"),
        Some(&EnvOrigin {
            var: "PORTICO_L__10".to_owned(),
            raw: Some("10".to_owned())
        })
    );
}

#[test]
fn bare_port_and_ipv6_binds() {
    assert_eq!(value::bind(&Value::Integer(1883)), Ok(addr("0.0.0.0:1883")));
    assert_eq!(value::bind(&Value::String("1884".to_owned())), Ok(addr("0.0.0.0:1884")));
    assert_eq!(
        value::bind(&Value::String("[::]:1883".to_owned())),
        Ok(addr("[::]:1883"))
    );
    assert!(value::bind(&Value::Integer(65536)).is_err());
    assert!(value::bind(&Value::String("localhost:1883".to_owned())).is_err());
    assert!(value::bind(&Value::String("127.0.0.1".to_owned())).is_err());
    assert!(value::bind(&Value::Boolean(true)).is_err());

    let file = "[listeners.tcp.a]\nbind = 1883\n[listeners.tcp.b]\nbind = \"[::1]:1884\"\n";
    let config = load_str("bare-port", file, &[("PORTICO_LISTENERS__TCP__C__BIND", "1885")]).unwrap();
    assert_eq!(config.listeners.tcp["a"].bind, addr("0.0.0.0:1883"));
    assert_eq!(config.listeners.tcp["b"].bind, addr("[::1]:1884"));
    assert_eq!(config.listeners.tcp["c"].bind, addr("0.0.0.0:1885"));
}

#[test]
fn defining_a_listener_replaces_the_default_one() {
    let config = load_str("only-foo", "[listeners.tcp.foo]\nbind = 2883\n", &[]).unwrap();
    assert_eq!(config.listeners.tcp.keys().collect::<Vec<_>>(), ["foo"]);
}

#[test]
fn clashing_listeners_are_refused() {
    let file = "[listeners.tcp.a]\nbind = 1883\n[listeners.tcp.b]\nbind = \"127.0.0.1:1883\"\n\
                [listeners.tcp.c]\nbind = 1883\nenable = false\n[listeners.tcp.d]\nbind = \"[::]:1883\"\n";
    let errors = errors_of(load_str("clash", file, &[]));
    // b overlaps a (0.0.0.0 covers 127.0.0.1); c is disabled; d is another address family.
    assert_eq!(errors.errors().len(), 1, "{errors}");
    let text = errors.to_string();
    assert!(text.contains("listeners.tcp.b.bind"), "{text}");
    assert!(text.contains("`a`"), "{text}");
}

#[test]
fn bytesize_parsing() {
    let s = |x: &str| value::bytesize(&Value::String(x.to_owned()));
    assert_eq!(value::bytesize(&Value::Integer(4096)), Ok(4096));
    assert_eq!(s("1MB"), Ok(1 << 20));
    assert_eq!(s("1mb"), Ok(1 << 20));
    assert_eq!(s("512KB"), Ok(512 << 10));
    assert_eq!(s("2GB"), Ok(2 << 30));
    assert_eq!(s("100B"), Ok(100));
    assert_eq!(s("100"), Ok(100));
    assert_eq!(s("10 KB"), Ok(10 << 10));
    for bad in [
        "",
        "MB",
        "1.5MB",
        "1TB",
        "-1",
        "1MBB",
        "99999999999999999999GB",
        "18446744073709551615GB",
    ] {
        assert!(s(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(value::bytesize(&Value::Integer(-1)).is_err());
    assert!(value::bytesize(&Value::Float(1.0)).is_err());

    let config = load_str("packet-max", "[mqtt]\nmax_packet_size = 268435460\n", &[]).unwrap();
    assert_eq!(config.mqtt.max_packet_size, 268_435_460);
    let errors = errors_of(load_str("packet-over", "[mqtt]\nmax_packet_size = \"1GB\"\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("mqtt.max_packet_size = \"1GB\": out of range"),
        "{errors}"
    );
}

#[test]
fn duration_parsing() {
    let s = |x: &str| value::duration(&Value::String(x.to_owned()));
    assert_eq!(s("15s"), Ok(Duration::from_secs(15)));
    assert_eq!(s("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(s("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(s("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(s("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(s("1w"), Ok(Duration::from_secs(604_800)));
    assert_eq!(s("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(s("1m500ms"), Ok(Duration::from_millis(60_500)));
    assert_eq!(s("30"), Ok(Duration::from_secs(30)));
    assert_eq!(value::duration(&Value::Integer(30)), Ok(Duration::from_secs(30)));
    for bad in [
        "",
        "s",
        "1.5s",
        "10x",
        "1h30",
        "1 h",
        "-1s",
        "infinity",
        "99999999999999999999w",
        "40000000000000w",
    ] {
        assert!(s(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(value::duration(&Value::Integer(-1)).is_err());
    assert!(value::duration(&Value::Boolean(true)).is_err());

    let file = "[mqtt]\nserver_keepalive = 60\nsession_expiry_interval = \"infinity\"\nretry_interval = \"1m\"\n";
    let config = load_str("durations", file, &[]).unwrap();
    assert_eq!(config.mqtt.server_keepalive, Some(60));
    assert_eq!(
        config.mqtt.session_expiry_interval,
        Duration::from_secs(u64::from(u32::MAX))
    );
    assert_eq!(config.mqtt.retry_interval, Duration::from_secs(60));
    let file = "[mqtt]\nserver_keepalive = \"1500ms\"\nretry_interval = 0\nidle_timeout = \"forever\"\n";
    assert_eq!(errors_of(load_str("bad-durations", file, &[])).errors().len(), 3);
}

#[test]
fn counts_accept_infinity_and_refuse_zero() {
    let config = Config::load(None, vars(&[("PORTICO_MQTT__MAX_MQUEUE_LEN", "infinity")])).unwrap();
    assert_eq!(config.mqtt.max_mqueue_len, usize::MAX);
    let errors = errors_of(Config::load(None, vars(&[("PORTICO_MQTT__MAX_AWAITING_REL", "0")])));
    assert!(errors.to_string().contains("use \"infinity\""), "{errors}");
}

#[test]
fn unknown_keys_are_reported_with_suggestions() {
    let file = "allow_anonymous = true\n[mqtt]\nmax_infligt = 10\n";
    let env = [("PORTICO_MQTT__RETRY_INTERVALL", "10s"), ("PORTICO_NODDE__NAME", "a@b")];
    let errors = errors_of(load_str("unknown", file, &env));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 4, "{text}");
    let path = std::env::temp_dir().join(format!("portico-config-test-{}-unknown.toml", std::process::id()));
    assert!(
        text.contains(&format!("{}: allow_anonymous = true: unknown key", path.display())),
        "{text}"
    );
    assert!(
        text.contains("mqtt.max_infligt = 10: unknown key; did you mean `max_inflight`?"),
        "{text}"
    );
    assert!(
        text.contains(
            "env PORTICO_MQTT__RETRY_INTERVALL: mqtt.retry_intervall = \"10s\": unknown key; did you mean `retry_interval`?"
        ),
        "{text}"
    );
    assert!(
        text.contains("env PORTICO_NODDE__NAME: nodde = { name = \"a@b\" }: unknown key; did you mean `node`?"),
        "{text}"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let file = r#"
        [node]
        name = "no-at-sign"
        [log.console]
        level = "verbose"
        [listeners.tcp.default]
        bind = "somewhere"
        max_connections = -5
        [listeners.tcp.default.tcp_options]
        nodelay = "yes"
        [mqtt]
        max_qos_allowed = 3
        keepalive_multiplier = 0.5
        peer_cert_as_username = "crt"
    "#;
    let errors = errors_of(load_str("many", file, &[("PORTICO_MQTT__MAX_INFLIGHT", "0")]));
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.errors().len());
    let keys = [
        "node.name",
        "log.console.level",
        "listeners.tcp.default.bind",
        "listeners.tcp.default.max_connections",
        "listeners.tcp.default.tcp_options.nodelay",
        "mqtt.max_qos_allowed",
        "mqtt.keepalive_multiplier",
        "mqtt.peer_cert_as_username",
        "mqtt.max_inflight",
    ];
    assert!(errors.errors().len() >= 3);
    assert_eq!(errors.errors().len(), keys.len(), "{text}");
    for key in keys {
        assert!(text.contains(&format!(" {key} = ")), "{key} missing from:\n{text}");
    }
    assert!(
        text.contains("env PORTICO_MQTT__MAX_INFLIGHT: mqtt.max_inflight = 0: out of range"),
        "{text}"
    );
    assert!(
        text.contains("not a UTF-8 string") || text.contains("UTF-8 strings"),
        "{text}"
    );
}

#[test]
fn wrong_section_type_is_reported() {
    let errors = errors_of(load_str("section-type", "mqtt = 5\n[listeners]\ntcp = []\n", &[]));
    let text = errors.to_string();
    assert!(text.contains("mqtt = 5: expected a table, found an integer"), "{text}");
    assert!(
        text.contains("listeners.tcp = []: expected a table, found an array"),
        "{text}"
    );
}

#[test]
fn env_name_problems_are_reported() {
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_MQTT__MAX_INFLIGHT__X", "1"), ("PORTICO_", "1")]),
    ));
    assert_eq!(errors.errors().len(), 2, "{errors}");
    let text = errors.to_string();
    assert!(text.contains("env PORTICO_MQTT__MAX_INFLIGHT__X: "), "{text}");
}

#[test]
fn syntax_error_names_file_and_line() {
    let path = temp_file("syntax", "[mqtt]\nmax_inflight = 32\nretain_available = tru\n");
    let errors = errors_of(Config::load(Some(&path), []));
    let _ = std::fs::remove_file(&path);
    assert_eq!(errors.errors().len(), 1);
    match &errors.errors()[0] {
        ConfigError::Syntax {
            path: p, line, column, ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
            assert_eq!(*column, 20);
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(
        errors
            .to_string()
            .starts_with(&format!("{}:3:20: TOML syntax error", path.display())),
        "{errors}"
    );
}

#[test]
fn missing_file_names_the_path() {
    let path = Path::new("/nonexistent/portico.toml");
    let errors = errors_of(Config::load(Some(path), []));
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/portico.toml: cannot read config file"),
        "{errors}"
    );
}

#[test]
fn cookie_is_redacted_in_debug() {
    let config = Config::load(None, vars(&[("PORTICO_NODE__COOKIE", "hunter2-very-secret")])).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2-very-secret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert_eq!(config.node.cookie, "hunter2-very-secret");
}

#[test]
fn log_levels_map_to_tracing() {
    let cases = [
        ("trace", "trace"),
        ("debug", "debug"),
        ("info", "info"),
        ("notice", "info"),
        ("warning", "warn"),
        ("error", "error"),
        ("critical", "error"),
        ("alert", "error"),
        ("emergency", "error"),
    ];
    for (name, directive) in cases {
        let config = Config::load(None, vars(&[("PORTICO_LOG__CONSOLE__LEVEL", name)])).unwrap();
        assert_eq!(config.log.console.level.as_str(), name);
        assert_eq!(config.log.console.level.tracing_directive(), directive, "{name}");
    }
}

#[test]
fn suggestions_and_rendering() {
    assert_eq!(value::edit_distance("kitten", "sitting"), 3);
    assert_eq!(
        value::suggest("max_infligt", &["max_inflight", "retry_interval"]),
        Some("max_inflight")
    );
    assert_eq!(value::suggest("Max_Inflight", &["max_inflight"]), Some("max_inflight"));
    assert_eq!(value::suggest("zz", &["ab"]), None);
    let long = Value::String("x".repeat(200));
    assert_eq!(value::render(&long).chars().count(), 80);
    assert_eq!(value::render(&Value::String("a\nb".to_owned())), "\"a\\nb\"");
}

mod auth_db;
mod auth_http;
mod dashboard;
mod features;
mod listeners;
mod overrides;
#[path = "../../../../transport/src/tests/pki.rs"]
mod pki;
mod sysmon;
mod webhook;

#[test]
fn ctl_socket_is_under_data_dir_absolute_or_off() {
    let config = Config::load(None, vars(&[])).unwrap();
    assert_eq!(config.node.ctl_socket_path(), Some(PathBuf::from("data/ctl.sock")));
    let config = Config::load(None, vars(&[("PORTICO_NODE__CTL_SOCKET", "/run/portico/ctl.sock")])).unwrap();
    assert_eq!(
        config.node.ctl_socket_path(),
        Some(PathBuf::from("/run/portico/ctl.sock"))
    );
    let config = Config::load(None, vars(&[("PORTICO_NODE__CTL_SOCKET", "\"\"")])).unwrap();
    assert_eq!(config.node.ctl_socket, None);
    assert_eq!(config.node.ctl_socket_path(), None);
    let errors = errors_of(Config::load(None, vars(&[("PORTICO_NODE__CTL_SOCKET", "sockets/")])));
    assert!(errors.to_string().contains("node.ctl_socket"), "{errors}");
    let long = "x".repeat(200);
    let errors = errors_of(Config::load(None, vars(&[("PORTICO_NODE__CTL_SOCKET", &long)])));
    assert!(errors.to_string().contains("Unix socket"), "{errors}");
}
