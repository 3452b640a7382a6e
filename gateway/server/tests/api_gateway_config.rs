//! A gateway's configuration changed through the HTTP API against a real server: a STOMP
//! listener moved to a new port (and still there after a reload and a restart on the same data
//! directory), listeners added and removed, a gateway unloaded, and bad bodies refused with the
//! key named. The gateway settings come from a config file, as in production: a key set by a
//! `PORTICO_*` variable cannot be changed through the API.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use portico::Server;
use portico::config::{Config, api_overrides_path};
use serde_json::{Value, json};
use support::http::{Auth, admin_token, api_env, call};
use support::{WAIT, addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config file enabling STOMP on a loopback port chosen by the system, plus a fresh data dir.
fn setup(name: &str) -> (PathBuf, (String, String)) {
    let data = support::data_dir_env();
    let dir = PathBuf::from(&data.1);
    std::fs::create_dir_all(&dir).expect("data dir");
    let file = dir.with_extension(format!("{name}.toml"));
    std::fs::write(
        &file,
        "[gateway.stomp]\nenable = true\n[gateway.stomp.listeners.tcp.default]\nbind = \"127.0.0.1:0\"\n",
    )
    .expect("config file");
    (file, data)
}

async fn start(file: &Path, data: &(String, String), extra: &[(&str, &str)]) -> (Server, SocketAddr, String) {
    let mut env = api_env();
    env.push(data.clone());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(Some(file), env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    (server, api, token)
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A STOMP 1.2 session on `at`: true when the gateway answers CONNECTED.
async fn stomp_connects(at: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(at).await else {
        return false;
    };
    if stream
        .write_all(b"CONNECT\naccept-version:1.2\nhost:h\n\n\0")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("in time")
        .unwrap_or(0);
    buf[..n].starts_with(b"CONNECTED\n")
}

fn stomp_at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn a_listener_port_changed_through_the_api_survives_reload_and_restart() {
    let (file, data) = setup("port");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);
    let old = addr(&server, "stomp:tcp:default");
    assert!(stomp_connects(old).await);

    let port = free_port();
    let body = json!({
        "name": "stomp",
        "enable": true,
        "mountpoint": "api/",
        "listeners": [{"type": "tcp", "name": "default", "bind": format!("127.0.0.1:{port}")}],
    });
    let put = call(api, "PUT", "/api/v5/gateways/stomp", auth, Some(body)).await;
    assert_eq!(put.status, 204, "{}", put.text());
    assert!(stomp_connects(stomp_at(port)).await, "serves on the new port");
    assert!(TcpStream::connect(old).await.is_err(), "the old port is closed");
    let gateway = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(
        gateway["listeners"][0]["bind"],
        format!("127.0.0.1:{port}"),
        "{gateway}"
    );
    let configs = call(api, "GET", "/api/v5/configs/gateway", auth, None).await.json();
    assert_eq!(configs["stomp"]["mountpoint"], "api/", "{configs}");

    // Saved privately under the data directory.
    let saved = api_overrides_path(Path::new(&data.1));
    let text = std::fs::read_to_string(&saved).expect("override file written");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A reload reads the file again, overrides included: nothing moves.
    let reload = call(api, "POST", "/api/v5/configs/reload", auth, None).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let configs = call(api, "GET", "/api/v5/configs/gateway", auth, None).await.json();
    assert_eq!(
        configs["stomp"]["listeners"]["tcp"]["default"]["bind"],
        format!("127.0.0.1:{port}"),
        "{configs}"
    );
    assert!(
        stomp_connects(stomp_at(port)).await,
        "still on the new port after a reload"
    );
    server.shutdown().await;

    // Restarted with the same file and data directory: the change is still there.
    let (server, api, token) = start(&file, &data, &[]).await;
    assert_eq!(addr(&server, "stomp:tcp:default"), stomp_at(port));
    assert!(
        stomp_connects(stomp_at(port)).await,
        "serves on the new port after a restart"
    );
    let configs = call(api, "GET", "/api/v5/configs/gateway", Auth::Bearer(&token), None)
        .await
        .json();
    assert_eq!(configs["stomp"]["mountpoint"], "api/", "{configs}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unloaded_gateway_refuses_clients_and_stays_off() {
    let (file, data) = setup("unload");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);
    let at = addr(&server, "stomp:tcp:default");
    assert!(stomp_connects(at).await);

    let unload = call(api, "DELETE", "/api/v5/gateways/stomp", auth, None).await;
    assert_eq!(unload.status, 204, "{}", unload.text());
    assert!(TcpStream::connect(at).await.is_err(), "clients refused");
    let gateway = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(gateway["status"], "stopped", "{gateway}");
    let unknown = call(api, "DELETE", "/api/v5/gateways/nope", auth, None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    server.shutdown().await;

    // Still off after a restart, although the file enables it.
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);
    assert!(
        !server.listeners().iter().any(|(n, _)| n == "stomp:tcp:default"),
        "{:?}",
        server.listeners()
    );
    let gateway = call(api, "GET", "/api/v5/gateways/stomp", auth, None).await.json();
    assert_eq!(gateway["status"], "stopped", "{gateway}");

    // Loaded again with a PUT.
    let load = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp",
        auth,
        Some(json!({"enable": true})),
    )
    .await;
    assert_eq!(load.status, 204, "{}", load.text());
    assert!(stomp_connects(addr(&server, "stomp:tcp:default")).await);
    server.shutdown().await;
}

#[tokio::test]
async fn listeners_are_added_changed_and_removed() {
    let (file, data) = setup("listeners");
    let (server, api, token) = start(&file, &data, &[]).await;
    let auth = Auth::Bearer(&token);

    let port = free_port();
    let body = json!({"type": "tcp", "name": "extra", "bind": format!("127.0.0.1:{port}")});
    let added = call(
        api,
        "POST",
        "/api/v5/gateways/stomp/listeners",
        auth,
        Some(body.clone()),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["id"], "stomp:tcp:extra");
    assert_eq!(added.json()["running"], true);
    assert!(stomp_connects(stomp_at(port)).await);
    let again = call(api, "POST", "/api/v5/gateways/stomp/listeners", auth, Some(body)).await;
    assert_eq!(again.status, 400, "{}", again.text());

    let moved = free_port();
    let change = json!({"bind": format!("127.0.0.1:{moved}")});
    let changed = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp/listeners/stomp:tcp:extra",
        auth,
        Some(change.clone()),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(changed.json()["bind"], format!("127.0.0.1:{moved}"));
    assert!(stomp_connects(stomp_at(moved)).await);
    let missing = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp/listeners/stomp:tcp:nope",
        auth,
        Some(change),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // Removed: the API-made one goes, the file's one is switched off.
    for id in ["stomp:tcp:extra", "tcp:default"] {
        let path = format!("/api/v5/gateways/stomp/listeners/{id}");
        let removed = call(api, "DELETE", &path, auth, None).await;
        assert_eq!(removed.status, 204, "{id}: {}", removed.text());
        let gone = call(api, "DELETE", &path, auth, None).await;
        assert_eq!(gone.status, 404, "{id}: {}", gone.text());
    }
    assert!(TcpStream::connect(stomp_at(moved)).await.is_err());
    let listeners = call(api, "GET", "/api/v5/gateways/stomp/listeners", auth, None)
        .await
        .json();
    assert_eq!(listeners, json!([]));
    let saved = std::fs::read_to_string(api_overrides_path(Path::new(&data.1))).expect("saved");
    assert!(!saved.contains("extra"), "{saved}");
    assert!(saved.contains("enable = false"), "{saved}");
    server.shutdown().await;
}

/// The `errors[].key` of a 400 answer.
fn error_keys(answer: &Value) -> Vec<String> {
    answer["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|p| p["key"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_bodies_are_refused_with_the_key_named() {
    let (file, data) = setup("bad");
    let (server, api, token) = start(&file, &data, &[("PORTICO_GATEWAY__STOMP__MOUNTPOINT", "env/")]).await;
    let auth = Auth::Bearer(&token);
    let at = addr(&server, "stomp:tcp:default");

    let cases = [
        (
            json!({"listeners": [{"type": "tcp", "name": "default", "bind": "nowhere"}]}),
            "gateway.stomp.listeners.tcp.default.bind",
        ),
        (json!({"enable": "yes"}), "gateway.stomp.enable"),
        (json!({"frame": {"max_headerz": 10}}), "gateway.stomp.frame.max_headerz"),
        (
            json!({"listeners": [{"name": "default"}]}),
            "gateway.stomp.listeners[0].type",
        ),
        (json!({"name": "coap"}), "gateway.stomp.name"),
        (json!({"mountpoint": "api/"}), "PORTICO_GATEWAY__STOMP__MOUNTPOINT"),
    ];
    for (body, key) in cases {
        let answer = call(api, "PUT", "/api/v5/gateways/stomp", auth, Some(body.clone())).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let json = answer.json();
        assert!(error_keys(&json).iter().any(|k| k == key), "{body}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| m.contains(key)),
            "{body}: {json}"
        );
    }
    // Nothing changed: still serving where it was.
    assert!(stomp_connects(at).await);
    // The same value as the variable is no change to it.
    let same = call(
        api,
        "PUT",
        "/api/v5/gateways/stomp",
        auth,
        Some(json!({"mountpoint": "env/"})),
    )
    .await;
    assert_eq!(same.status, 204, "{}", same.text());

    for (method, path, body, status) in [
        ("PUT", "/api/v5/gateways/stomp", Some(json!([1, 2])), 400),
        ("PUT", "/api/v5/gateways/nope", Some(json!({"enable": true})), 404),
        (
            "POST",
            "/api/v5/gateways/stomp/listeners",
            Some(json!({"type": "tcp"})),
            400,
        ),
        (
            "POST",
            "/api/v5/gateways/nope/listeners",
            Some(json!({"type": "tcp", "name": "x"})),
            404,
        ),
        ("DELETE", "/api/v5/gateways/stomp/listeners/garbage", None, 404),
    ] {
        let answer = call(api, method, path, auth, body).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
    }
    // The accepted one restarted the gateway (on a new port: the file binds port 0).
    assert!(stomp_connects(addr(&server, "stomp:tcp:default")).await);
    server.shutdown().await;
}
