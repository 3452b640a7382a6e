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
fn proxy_protocol_true_is_refused() {
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL", "true")]),
    ));
    let text = errors.to_string();
    assert!(
        text.starts_with(
            "env PORTICO_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL: listeners.tcp.default.proxy_protocol = true:"
        ),
        "{text}"
    );
    assert!(text.contains("not supported yet"), "{text}");
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
        peer_cert_as_username = "cn"
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
    assert!(text.contains("comes with TLS listeners"), "{text}");
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

#[test]
fn new_sections_default_to_emqx_values() {
    let config = Config::default();
    assert_eq!(config.mqtt.shared_subscription_strategy, SharedStrategy::RoundRobin);
    assert_eq!(config.mqtt.response_information, "");
    assert_eq!(
        config.delayed,
        DelayedConfig {
            enable: true,
            max_delayed_messages: 100_000
        }
    );
    assert!(config.rewrite.is_empty());
    assert!(config.auto_subscribe.topics.is_empty());
    assert_eq!(config.sys_topics.sys_msg_interval, Some(Duration::from_secs(60)));
    assert_eq!(config.sys_topics.sys_heartbeat_interval, Some(Duration::from_secs(30)));
    assert_eq!(
        config.sys_topics.sys_event_messages,
        SysEventMessages {
            client_connected: true,
            client_disconnected: true,
            client_subscribed: false,
            client_unsubscribed: false,
        }
    );
    assert_eq!(
        config.retainer,
        RetainerConfig {
            enable: true,
            max_retained_messages: usize::MAX,
            max_payload_size: 1 << 20,
            msg_expiry_interval: None,
        }
    );
    // The shipped file spells the defaults out; loading it must give exactly the same.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/portico.toml");
    assert_eq!(Config::load(Some(&path), []).unwrap(), config);
}

#[test]
fn shared_subscription_strategy_names() {
    for (strategy, name) in SharedStrategy::ALL {
        let config = Config::load(None, vars(&[("PORTICO_MQTT__SHARED_SUBSCRIPTION_STRATEGY", name)])).unwrap();
        assert_eq!(config.mqtt.shared_subscription_strategy, strategy);
        assert_eq!(strategy.as_str(), name);
    }
    let config = load_str(
        "strategy",
        "[mqtt]\nshared_subscription_strategy = \"hash_clientid\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.mqtt.shared_subscription_strategy, SharedStrategy::HashClientid);
    let errors = errors_of(load_str(
        "strategy-bad",
        "[mqtt]\nshared_subscription_strategy = \"least_loaded\"\n",
        &[],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 1, "{text}");
    assert!(
        text.contains("mqtt.shared_subscription_strategy = \"least_loaded\": expected one of random, round_robin,"),
        "{text}"
    );
    assert!(
        errors_of(load_str(
            "strategy-type",
            "[mqtt]\nshared_subscription_strategy = 1\n",
            &[]
        ))
        .errors()
        .len()
            == 1
    );
}

#[test]
fn response_information() {
    let config = load_str("resp-info", "[mqtt]\nresponse_information = \"reply/\"\n", &[]).unwrap();
    assert_eq!(config.mqtt.response_information, "reply/");
    let errors = errors_of(load_str("resp-info-type", "[mqtt]\nresponse_information = true\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("mqtt.response_information = true: expected a string"),
        "{errors}"
    );
    let long = "x".repeat(65_536);
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_MQTT__RESPONSE_INFORMATION", long.as_str())]),
    ));
    assert!(errors.to_string().contains("too long"), "{errors}");
}

#[test]
fn delayed_section() {
    let file = "[delayed]\nenable = false\nmax_delayed_messages = \"infinity\"\n";
    let config = load_str("delayed", file, &[]).unwrap();
    assert_eq!(
        config.delayed,
        DelayedConfig {
            enable: false,
            max_delayed_messages: usize::MAX
        }
    );
    let config = Config::load(None, vars(&[("PORTICO_DELAYED__MAX_DELAYED_MESSAGES", "5")])).unwrap();
    assert_eq!(config.delayed.max_delayed_messages, 5);
    let errors = errors_of(load_str(
        "delayed-bad",
        "[delayed]\nenable = \"yes\"\nmax_delayed_messages = 0\nmax_delayed = 1\n",
        &[],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 3, "{text}");
    assert!(
        text.contains("delayed.enable = \"yes\": expected true or false"),
        "{text}"
    );
    assert!(
        text.contains("delayed.max_delayed_messages = 0: must be at least 1; use \"infinity\" for no limit"),
        "{text}"
    );
    assert!(text.contains("delayed.max_delayed = 1: unknown key"), "{text}");
}

const TWO_RULES: &str = r#"
[[rewrite]]
action = "publish"
source_topic = "x/#"
re = "^x/y/(.+)$"
dest_topic = "z/y/$1"

[[rewrite]]
action = "subscribe"
source_topic = "a/+/b"
re = "^a/(\\w+)/b$"
dest_topic = "b/$1"
"#;

#[test]
fn rewrite_rules_load_in_order() {
    let config = load_str("rewrite", TWO_RULES, &[]).unwrap();
    assert_eq!(
        config.rewrite,
        vec![
            RewriteRule {
                action: RewriteAction::Publish,
                source_topic: "x/#".to_owned(),
                re: "^x/y/(.+)$".to_owned(),
                dest_topic: "z/y/$1".to_owned(),
            },
            RewriteRule {
                action: RewriteAction::Subscribe,
                source_topic: "a/+/b".to_owned(),
                re: "^a/(\\w+)/b$".to_owned(),
                dest_topic: "b/$1".to_owned(),
            },
        ]
    );
    // Inline-table form, as in the shipped file's example, and the `all` action.
    let file = r##"rewrite = [{ action = "all", source_topic = "#", re = ".*", dest_topic = "t" }]"##;
    let config = load_str("rewrite-inline", file, &[]).unwrap();
    assert_eq!(config.rewrite.len(), 1);
    assert_eq!(config.rewrite[0].action, RewriteAction::All);
}

#[test]
fn rewrite_env_overrides_an_element_and_appends() {
    let env = [
        ("PORTICO_REWRITE__1__DEST_TOPIC", "z/$1"),
        ("PORTICO_REWRITE__3__ACTION", "all"),
        ("PORTICO_REWRITE__3__SOURCE_TOPIC", "c/#"),
        ("PORTICO_REWRITE__3__RE", "^c/(.*)$"),
        ("PORTICO_REWRITE__3__DEST_TOPIC", "d/$1"),
    ];
    let config = load_str("rewrite-env", TWO_RULES, &env).unwrap();
    assert_eq!(config.rewrite.len(), 3);
    assert_eq!(config.rewrite[0].dest_topic, "z/$1");
    assert_eq!(
        config.rewrite[0].re, "^x/y/(.+)$",
        "the rest of the element comes from the file"
    );
    assert_eq!(config.rewrite[1].dest_topic, "b/$1");
    assert_eq!(config.rewrite[2].action, RewriteAction::All);
    assert_eq!(config.rewrite[2].source_topic, "c/#");

    // A bad override is blamed on the variable, with the 0-based element index in the key.
    let errors = errors_of(load_str(
        "rewrite-env-bad",
        TWO_RULES,
        &[("PORTICO_REWRITE__2__RE", "(")],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 1, "{text}");
    assert!(
        text.starts_with("env PORTICO_REWRITE__2__RE: rewrite[1].re = \"(\": not a valid regular expression"),
        "{text}"
    );
    // An element created by the environment that lacks keys is reported on the element.
    let errors = errors_of(load_str(
        "rewrite-env-missing",
        TWO_RULES,
        &[("PORTICO_REWRITE__3__ACTION", "all")],
    ));
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 3, "{text}");
    assert!(
        text.contains("env PORTICO_REWRITE__3__ACTION: rewrite[2] = { action = \"all\" }: missing required key `re`"),
        "{text}"
    );
}

#[test]
fn bad_rewrite_rules_are_all_reported() {
    let file = r#"
[[rewrite]]
action = "deliver"
source_topic = "a/#/b"
re = "(unclosed"
dest_topic = ""
extra = 1

[[rewrite]]
action = "publish"
source_topic = "a+"
re = "^a(?=b)"

[[rewrite]]
action = "publish"
source_topic = ""
re = "x"
dest_topic = "y"
"#;
    let errors = errors_of(load_str("rewrite-bad", file, &[]));
    let text = errors.to_string();
    assert_eq!(
        text.lines().count(),
        errors.errors().len(),
        "one line per problem:\n{text}"
    );
    let expected = [
        "rewrite[0].action = \"deliver\": expected one of publish, subscribe, all",
        "rewrite[0].source_topic = \"a/#/b\": not a valid topic filter: '#' must be the last character",
        "rewrite[0].re = \"(unclosed\": not a valid regular expression",
        "rewrite[0].dest_topic = \"\": must not be empty",
        "rewrite[0].extra = 1: unknown key",
        "rewrite[1].source_topic = \"a+\": not a valid topic filter: '+' must occupy a whole level",
        "rewrite[1].re = \"^a(?=b)\": not a valid regular expression",
        "missing required key `dest_topic`",
        "rewrite[2].source_topic = \"\": not a valid topic filter: topic is empty",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");
    assert!(text.contains("rewrite[1] = { action = \"publish\""), "{text}");

    let errors = errors_of(load_str("rewrite-shape", "rewrite = [1]\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("rewrite[0] = 1: expected a table, found an integer"),
        "{errors}"
    );
    let errors = errors_of(load_str("rewrite-type", "[rewrite]\naction = \"all\"\n", &[]));
    assert!(
        errors
            .to_string()
            .contains("rewrite = { action = \"all\" }: expected an array of tables, found a table"),
        "{errors}"
    );
}

#[test]
fn auto_subscribe_topics() {
    let file = r#"
[[auto_subscribe.topics]]
topic = "client/${clientid}/inbox"
qos = 1
rh = 2
rap = 1
nl = 1

[[auto_subscribe.topics]]
topic = "all/${username}"
"#;
    let config = load_str("auto-sub", file, &[("PORTICO_AUTO_SUBSCRIBE__TOPICS__2__QOS", "2")]).unwrap();
    assert_eq!(
        config.auto_subscribe.topics,
        vec![
            AutoSubscribe {
                topic: "client/${clientid}/inbox".to_owned(),
                qos: 1,
                rh: 2,
                rap: true,
                nl: true,
            },
            AutoSubscribe {
                topic: "all/${username}".to_owned(),
                qos: 2,
                rh: 0,
                rap: false,
                nl: false,
            },
        ]
    );
    // The environment alone can create an entry; omitted options take their defaults.
    let config = Config::load(None, vars(&[("PORTICO_AUTO_SUBSCRIBE__TOPICS__1__TOPIC", "t/${host}")])).unwrap();
    assert_eq!(config.auto_subscribe.topics.len(), 1);
    assert_eq!(config.auto_subscribe.topics[0].topic, "t/${host}");
    assert_eq!(config.auto_subscribe.topics[0].qos, 0);

    let file = r#"
[auto_subscribe]
topics = [
  { topic = "", qos = 3, rh = -1, rap = 2, nl = true },
  { qos = 1 },
  { topic = "ok", retain = 1 },
]
"#;
    let errors = errors_of(load_str("auto-sub-bad", file, &[]));
    let text = errors.to_string();
    let expected = [
        "auto_subscribe.topics[0].topic = \"\": must not be empty",
        "auto_subscribe.topics[0].qos = 3: out of range: must be between 0 and 2",
        "auto_subscribe.topics[0].rh = -1: out of range: must be between 0 and 2",
        "auto_subscribe.topics[0].rap = 2: out of range: must be between 0 and 1",
        "auto_subscribe.topics[0].nl = true: expected an integer",
        "auto_subscribe.topics[1] = { qos = 1 }: missing required key `topic`",
        "auto_subscribe.topics[2].retain = 1: unknown key",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");

    let long = "a".repeat(65_536);
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_AUTO_SUBSCRIBE__TOPICS__1__TOPIC", long.as_str())]),
    ));
    assert!(errors.to_string().contains("too long"), "{errors}");
}

#[test]
fn sys_topics_section() {
    let file = r#"
[sys_topics]
sys_msg_interval = "disabled"
sys_heartbeat_interval = "1m30s"
[sys_topics.sys_event_messages]
client_connected = false
client_subscribed = true
"#;
    let env = [("PORTICO_SYS_TOPICS__SYS_EVENT_MESSAGES__CLIENT_UNSUBSCRIBED", "true")];
    let config = load_str("sys", file, &env).unwrap();
    assert_eq!(
        config.sys_topics,
        SysTopicsConfig {
            sys_msg_interval: None,
            sys_heartbeat_interval: Some(Duration::from_secs(90)),
            sys_event_messages: SysEventMessages {
                client_connected: false,
                client_disconnected: true,
                client_subscribed: true,
                client_unsubscribed: true,
            },
        }
    );
    let config = Config::load(
        None,
        vars(&[("PORTICO_SYS_TOPICS__SYS_HEARTBEAT_INTERVAL", "disabled")]),
    )
    .unwrap();
    assert_eq!(config.sys_topics.sys_heartbeat_interval, None);

    let file = r#"
[sys_topics]
sys_msg_interval = 0
sys_heartbeat_interval = "never"
[sys_topics.sys_event_messages]
client_disconnected = 1
session_created = true
"#;
    let errors = errors_of(load_str("sys-bad", file, &[]));
    let text = errors.to_string();
    let expected = [
        "sys_topics.sys_msg_interval = 0: must be greater than zero; use \"disabled\" to turn it off",
        "sys_topics.sys_heartbeat_interval = \"never\": expected a duration",
        "sys_topics.sys_event_messages.client_disconnected = 1: expected true or false",
        "sys_topics.sys_event_messages.session_created = true: unknown key",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");
}

#[test]
fn retainer_section() {
    let file = r#"
[retainer]
enable = false
max_retained_messages = 5000
max_payload_size = "64KB"
msg_expiry_interval = "1h"
"#;
    let config = load_str("retainer", file, &[]).unwrap();
    assert_eq!(
        config.retainer,
        RetainerConfig {
            enable: false,
            max_retained_messages: 5000,
            max_payload_size: 64 << 10,
            msg_expiry_interval: Some(Duration::from_secs(3600)),
        }
    );
    for never in ["0s", "0", "disabled"] {
        let config = Config::load(None, vars(&[("PORTICO_RETAINER__MSG_EXPIRY_INTERVAL", never)])).unwrap();
        assert_eq!(config.retainer.msg_expiry_interval, None, "{never}");
    }

    let file = r#"
[retainer]
enable = 1
max_retained_messages = 0
max_payload_size = 0
msg_expiry_interval = "forever"
"#;
    let errors = errors_of(load_str("retainer-bad", file, &[]));
    let text = errors.to_string();
    let expected = [
        "retainer.enable = 1: expected true or false",
        "retainer.max_retained_messages = 0: must be at least 1; use \"infinity\" for no limit",
        "retainer.max_payload_size = 0: must be at least 1 byte",
        "retainer.msg_expiry_interval = \"forever\": expected a duration",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(errors.errors().len(), expected.len(), "{text}");
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_RETAINER__MAX_PAYLOAD_SIZE", "1TB")]),
    ));
    assert!(
        errors.to_string().starts_with(
            "env PORTICO_RETAINER__MAX_PAYLOAD_SIZE: retainer.max_payload_size = \"1TB\": expected a size"
        ),
        "{errors}"
    );
}
