//! The API-override layer: precedence, environment conflicts, persistence, a bad file.

use super::*;
use crate::config::overrides::{self, api_overrides_path};

/// A fresh data directory for one test.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-overrides-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_overrides(dir: &Path, text: &str) {
    let path = api_overrides_path(dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn overrides_win_over_the_file_and_lose_to_the_environment() {
    let dir = data_dir("precedence");
    let file = temp_file(
        "precedence",
        &format!(
            "[node]\ndata_dir = {:?}\n[gateway.coap]\nheartbeat = \"10s\"\nmountpoint = \"file/\"\nidle_timeout = \"7s\"\n",
            dir.display().to_string()
        ),
    );
    write_overrides(
        &dir,
        "[gateway.coap]\nheartbeat = \"20s\"\nmountpoint = \"api/\"\n[gateway.coap.listeners.udp.default]\nbind = 5699\n",
    );
    let config = Config::load(Some(&file), vars(&[("PORTICO_GATEWAY__COAP__MOUNTPOINT", "env/")])).unwrap();
    let coap = &config.gateway.coap;
    // default < file: idle_timeout from the file.
    assert_eq!(coap.idle_timeout, Duration::from_secs(7));
    // file < API: heartbeat and the listener port from the overrides.
    assert_eq!(coap.heartbeat, Duration::from_secs(20));
    assert_eq!(coap.udp["default"].bind, addr("0.0.0.0:5699"));
    // API < environment.
    assert_eq!(coap.mountpoint, "env/");
    // The effective tree shows the merge.
    let tree = config.source.to_masked_json();
    assert_eq!(tree["gateway"]["coap"]["heartbeat"], "20s");
    assert_eq!(config.source.api_path, api_overrides_path(&dir));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_override_names_the_override_file_and_the_key() {
    let dir = data_dir("invalid");
    write_overrides(&dir, "[gateway.coap]\nheartbeat = \"soon\"\n");
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_NODE__DATA_DIR", &dir.display().to_string())]),
    ));
    let text = errors.to_string();
    assert!(text.contains("api.toml"), "{text}");
    assert!(text.contains("gateway.coap.heartbeat"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_override_file_is_refused_naming_it() {
    let dir = data_dir("broken");
    write_overrides(&dir, "[gateway.coap\nenable = true\n");
    let errors = errors_of(Config::load(
        None,
        vars(&[("PORTICO_NODE__DATA_DIR", &dir.display().to_string())]),
    ));
    let [ConfigError::Syntax { path, line, .. }] = errors.errors() else {
        panic!("expected one syntax error, got {errors}");
    };
    assert_eq!(path, &api_overrides_path(&dir));
    assert_eq!(*line, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_override_file_is_an_empty_layer() {
    let dir = data_dir("missing");
    let config = Config::load(None, vars(&[("PORTICO_NODE__DATA_DIR", &dir.display().to_string())])).unwrap();
    assert!(config.source.api.is_empty());
    assert_eq!(config.gateway.coap, CoapConfig::default());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn changes_to_keys_the_environment_sets_are_conflicts() {
    let env = vars(&[
        ("PORTICO_GATEWAY__COAP__MOUNTPOINT", "env/"),
        ("PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND", "5700"),
        ("PORTICO_MQTT__MAX_INFLIGHT", "10"),
    ]);
    let before: toml::Table = toml::from_str("[gateway.coap]\nmountpoint = \"old/\"\n").unwrap();
    // The same value as the variable, or a key it does not set: no conflict.
    let same: toml::Table = toml::from_str("[gateway.coap]\nmountpoint = \"env/\"\nheartbeat = \"5s\"\n").unwrap();
    assert!(overrides::env_conflicts(&before, &same, &env).is_empty());
    // Unchanged from before: no conflict either (the API did not touch it).
    assert!(overrides::env_conflicts(&before, &before, &env).is_empty());
    let after: toml::Table =
        toml::from_str("[gateway.coap]\nmountpoint = \"api/\"\n[gateway.coap.listeners.udp.default]\nbind = 5701\n")
            .unwrap();
    let conflicts = overrides::env_conflicts(&before, &after, &env);
    assert_eq!(
        conflicts,
        vec![
            (
                "PORTICO_GATEWAY__COAP__MOUNTPOINT".to_owned(),
                "gateway.coap.mountpoint".to_owned()
            ),
            (
                "PORTICO_GATEWAY__COAP__LISTENERS__UDP__DEFAULT__BIND".to_owned(),
                "gateway.coap.listeners.udp.default.bind".to_owned()
            ),
        ]
    );
}

#[test]
fn overrides_are_written_atomically_and_privately() {
    let dir = data_dir("write");
    let path = api_overrides_path(&dir);
    let table: toml::Table = toml::from_str("[gateway.stomp]\nenable = false\n").unwrap();
    overrides::write(&path, &table).unwrap();
    assert_eq!(overrides::read(&path).unwrap(), table);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Replaced whole, no temporary file left behind.
    let second: toml::Table = toml::from_str("[gateway.coap]\nenable = true\n").unwrap();
    overrides::write(&path, &second).unwrap();
    assert_eq!(overrides::read(&path).unwrap(), second);
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["api.toml".to_owned()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tables_merge_key_by_key() {
    let mut base: toml::Table = toml::from_str("[a]\nx = 1\ny = 2\n[b]\nz = [1]\n").unwrap();
    let over: toml::Table = toml::from_str("[a]\ny = 3\n[b]\nz = [2, 3]\n").unwrap();
    overrides::merge(&mut base, &over);
    let expected: toml::Table = toml::from_str("[a]\nx = 1\ny = 3\n[b]\nz = [2, 3]\n").unwrap();
    assert_eq!(base, expected);
}
