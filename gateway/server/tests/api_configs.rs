//! The HTTP API's configuration endpoints against a real server on loopback: the running
//! configuration with every secret masked, one section, and a reload from the changed file
//! (a new listener started) or from an invalid one (400, nothing changed).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use portico::Server;
use portico::config::Config;
use serde_json::Value;
use support::http::{ADMIN_PASSWORD, Auth, admin_token, api_env, call};
use support::{WAIT, addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The secret values the configuration below holds; none may appear in an answer.
const SECRETS: [&str; 5] = [
    "cookie-SECRET-1",
    "jwt-SECRET-2",
    "url-SECRET-3",
    "hdr-SECRET-4",
    "sn-SECRET-5",
];

const WITH_SECRETS: &str = r#"
[node]
cookie = "cookie-SECRET-1"

[mqtt]
max_packet_size = "2MB"

[dashboard]
token_expired_time = "30m"

[[authentication]]
mechanism = "jwt"
from = "password"
secret = "jwt-SECRET-2"

[[authentication]]
mechanism = "password_based"
backend = "http"
method = "post"
url = "http://user:url-SECRET-3@127.0.0.1:9/mqtt/auth"
headers = { authorization = "Bearer hdr-SECRET-4" }

[gateway.mqttsn]
clientinfo_override = { username = "sn", password = "sn-SECRET-5" }
"#;

const PLAIN: &str = "[mqtt]\nmax_packet_size = \"2MB\"\n";

/// A fresh config file holding `text`.
fn write_config(text: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("configs-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

async fn start(path: &std::path::Path) -> (Server, SocketAddr, String) {
    let mut env = api_env();
    env.push(support::data_dir_env());
    let config = Config::load(Some(path), env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    (server, api, token)
}

#[tokio::test]
async fn the_running_configuration_is_shown_without_secrets() {
    let path = write_config(WITH_SECRETS);
    let (server, api, token) = start(&path).await;
    let answer = call(api, "GET", "/api/v5/configs", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["mqtt"]["max_packet_size"], "2MB");
    for section in [
        "node",
        "mqtt",
        "listeners",
        "gateway",
        "dashboard",
        "authentication",
        "authorization",
        "retainer",
    ] {
        assert!(json.get(section).is_some(), "no {section} in {json}");
    }
    // The environment's overrides are part of the running configuration.
    assert_eq!(json["listeners"]["tcp"]["default"]["bind"], "127.0.0.1:0");
    assert_eq!(json["node"]["cookie"], "******");
    assert_eq!(json["dashboard"]["default_password"], "******");
    // Masked by name, not by a word anywhere in it.
    assert_eq!(json["dashboard"]["token_expired_time"], "30m");
    assert_eq!(json["authentication"][0]["secret"], "******");
    assert_eq!(json["authentication"][1]["headers"]["authorization"], "******");
    assert_eq!(json["authentication"][1]["url"], "http://******@127.0.0.1:9/mqtt/auth");
    assert_eq!(json["gateway"]["mqttsn"]["clientinfo_override"]["username"], "sn");
    let text = answer.text();
    for secret in SECRETS.iter().chain([&ADMIN_PASSWORD]) {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn one_section_or_404() {
    let path = write_config(WITH_SECRETS);
    let (server, api, token) = start(&path).await;
    let answer = call(api, "GET", "/api/v5/configs/mqtt", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["max_packet_size"], "2MB");
    let answer = call(api, "GET", "/api/v5/configs/node", Auth::Bearer(&token), None).await;
    assert_eq!(answer.json()["cookie"], "******");
    // Unset sections are there, empty.
    let answer = call(api, "GET", "/api/v5/configs/retainer", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.json().is_object());
    let answer = call(api, "GET", "/api/v5/configs/nonsense", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    assert_eq!(answer.json()["code"], "NOT_FOUND");
    let answer = call(api, "GET", "/api/v5/configs", Auth::None, None).await;
    assert_eq!(answer.status, 401);
    server.shutdown().await;
}

/// MQTT 3.1.1 CONNECT (client id `x`) on `at`; true when a CONNACK accepting it comes back.
async fn mqtt_accepts(at: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(at).await.expect("connect");
    let connect = [
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, b'x',
    ];
    stream.write_all(&connect).await.expect("write");
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("in time")
        .expect("CONNACK");
    connack == [0x20, 0x02, 0x00, 0x00]
}

#[tokio::test]
async fn reload_starts_a_new_listener() {
    let path = write_config(PLAIN);
    let (server, api, token) = start(&path).await;
    std::fs::write(
        &path,
        format!("{PLAIN}\n[listeners.tcp.extra]\nbind = \"127.0.0.1:0\"\n"),
    )
    .expect("rewrite config");
    let answer = call(api, "POST", "/api/v5/configs/reload", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let report = answer.json();
    assert_eq!(report["started"], serde_json::json!(["tcp:extra"]), "{report}");
    assert_eq!(report["restarted"], serde_json::json!([]), "{report}");
    assert_eq!(report["stopped"], serde_json::json!([]), "{report}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    assert!(mqtt_accepts(addr(&server, "tcp:extra")).await);
    // The configuration shown is the new one.
    let answer = call(api, "GET", "/api/v5/configs/listeners", Auth::Bearer(&token), None).await;
    assert_eq!(answer.json()["tcp"]["extra"]["bind"], "127.0.0.1:0");
    server.shutdown().await;
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_nothing_changes() {
    let path = write_config(PLAIN);
    let (server, api, token) = start(&path).await;
    std::fs::write(
        &path,
        "[mqtt]\nmax_packet_size = \"lots\"\n[listeners.tcp.extra]\nbind = \"127.0.0.1:0\"\n",
    )
    .expect("rewrite config");
    let answer = call(api, "POST", "/api/v5/configs/reload", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["code"], "BAD_REQUEST");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e["key"] == "mqtt.max_packet_size" && e["reason"].as_str().is_some()),
        "{body}"
    );
    // Still running, as before.
    assert!(server.listeners().iter().all(|(name, _)| name != "tcp:extra"));
    assert!(mqtt_accepts(addr(&server, "tcp:default")).await);
    let answer = call(api, "GET", "/api/v5/configs/mqtt", Auth::Bearer(&token), None).await;
    assert_eq!(answer.json()["max_packet_size"], "2MB");
    // A file that is not TOML names the file.
    std::fs::write(&path, "[mqtt\n").expect("rewrite config");
    let answer = call(api, "POST", "/api/v5/configs/reload", Auth::Bearer(&token), None).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let body: Value = answer.json();
    assert_eq!(body["errors"][0]["key"], path.display().to_string(), "{body}");
    server.shutdown().await;
}
