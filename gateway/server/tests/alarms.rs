//! Alarms end to end: a real server with tiny watermarks raises them, an MQTT subscriber to
//! `$SYS/brokers/+/alarms/#` receives EMQX's payloads, the HTTP API lists them, and they
//! clear when the condition ends.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use portico::Server;
use portico::config::Config;
use portico_mqtt::{Packet, ProtocolVersion, ReasonCode};
use serde_json::{Value, json};
use support::http::{Auth, admin_token, api_env, request};
use support::{Client, addr};
use tokio::net::TcpStream;

async fn start(extra: &[(&str, &str)]) -> (Server, SocketAddr) {
    let mut env = api_env();
    env.push(support::data_dir_env());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    (server, api)
}

async fn mqtt(server: &Server, id: &str) -> Client {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(client.connect(id, None).await, Some(ReasonCode::Success));
    client
}

async fn alarms(api: SocketAddr, token: &str, query: &str) -> Value {
    let answer = request(api, "GET", &format!("/api/v5/alarms{query}"), Auth::Bearer(token), None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// Waits for the next alarm message; returns its topic and JSON payload.
async fn next_alarm(client: &mut Client) -> (String, Value) {
    let publish = client.expect_publish().await;
    let payload = serde_json::from_slice(&publish.payload).expect("JSON payload");
    (publish.topic.to_string(), payload)
}

#[tokio::test]
async fn too_many_connections_is_raised_published_listed_and_cleared() {
    let (server, api) = start(&[
        ("PORTICO_ALARM__CONNECTIONS_HIGH_WATERMARK", "1"),
        ("PORTICO_ALARM__CHECK_INTERVAL", "100ms"),
        ("PORTICO_SYSMON__OS__CPU_CHECK_INTERVAL", "disabled"),
        ("PORTICO_SYSMON__OS__MEM_CHECK_INTERVAL", "disabled"),
    ])
    .await;
    let token = admin_token(api).await;
    let mut watcher = mqtt(&server, "watcher").await;
    watcher.subscribe("$SYS/brokers/+/alarms/#").await;
    // One connection (the watcher) is not above the watermark.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alarms(api, &token, "").await["data"], json!([]));

    let second = mqtt(&server, "second").await;
    let (topic, payload) = next_alarm(&mut watcher).await;
    assert_eq!(topic, "$SYS/brokers/portico@127.0.0.1/alarms/activate");
    assert_eq!(payload["name"], "too_many_connections");
    assert_eq!(payload["activated"], true);
    assert_eq!(payload["deactivate_at"], "infinity");
    assert_eq!(payload["details"], json!({"connections": 2, "high_watermark": 1}));
    assert_eq!(payload["message"], "More than 1 connections are open");
    assert!(payload["activate_at"].as_u64().expect("µs timestamp") > 1_600_000_000_000_000);

    let active = alarms(api, &token, "?activated=true").await;
    assert_eq!(active["meta"]["count"], 1, "{active}");
    let listed = &active["data"][0];
    assert_eq!(listed["node"], "portico@127.0.0.1");
    assert_eq!(listed["name"], "too_many_connections");
    assert_eq!(listed["deactivate_at"], "infinity");
    assert_eq!(listed["details"]["high_watermark"], 1);
    assert!(listed["duration"].is_u64());
    assert!(listed["activate_at"].as_str().expect("RFC 3339").ends_with('Z'));
    assert_eq!(alarms(api, &token, "?activated=false").await["data"], json!([]));

    // The condition ends: the alarm is deactivated and goes to the history.
    drop(second);
    let (topic, payload) = next_alarm(&mut watcher).await;
    assert_eq!(topic, "$SYS/brokers/portico@127.0.0.1/alarms/deactivate");
    assert_eq!(payload["name"], "too_many_connections");
    assert_eq!(payload["activated"], false);
    assert!(payload["deactivate_at"].as_u64().expect("µs") >= payload["activate_at"].as_u64().expect("µs"));

    assert_eq!(alarms(api, &token, "?activated=true").await["data"], json!([]));
    let history = alarms(api, &token, "?activated=false").await;
    assert_eq!(history["meta"]["count"], 1, "{history}");
    assert_eq!(history["data"][0]["name"], "too_many_connections");
    assert_ne!(history["data"][0]["deactivate_at"], "infinity");
    assert_eq!(alarms(api, &token, "").await["meta"]["count"], 1);

    let cleared = request(api, "DELETE", "/api/v5/alarms", Auth::Bearer(&token), None).await;
    assert_eq!(cleared.status, 204, "{}", cleared.text());
    assert_eq!(alarms(api, &token, "?activated=false").await["meta"]["count"], 0);

    let bad = request(api, "GET", "/api/v5/alarms?activated=maybe", Auth::Bearer(&token), None).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let unauthorized = request(api, "GET", "/api/v5/alarms", Auth::None, None).await;
    assert_eq!(unauthorized.status, 401);
    drop(watcher);
    server.shutdown().await;
}

#[tokio::test]
async fn memory_and_store_watermarks_of_zero_raise_their_alarms() {
    let (server, api) = start(&[
        ("PORTICO_SYSMON__OS__CPU_CHECK_INTERVAL", "disabled"),
        ("PORTICO_SYSMON__OS__MEM_CHECK_INTERVAL", "100ms"),
        ("PORTICO_SYSMON__OS__SYSMEM_HIGH_WATERMARK", "0"),
        ("PORTICO_SYSMON__OS__PROCMEM_HIGH_WATERMARK", "0%"),
        ("PORTICO_ALARM__CHECK_INTERVAL", "100ms"),
        ("PORTICO_ALARM__STORE_SIZE_HIGH_WATERMARK", "1"),
    ])
    .await;
    let token = admin_token(api).await;
    let mut names = Vec::new();
    for _ in 0..50 {
        let listed = alarms(api, &token, "?activated=true").await;
        names = listed["data"]
            .as_array()
            .expect("array")
            .iter()
            .map(|a| a["name"].as_str().expect("name").to_owned())
            .collect();
        if names.len() == 3 {
            let memory = &listed["data"][0];
            assert_eq!(memory["name"], "high_process_memory_usage");
            assert_eq!(memory["details"]["high_watermark"], 0);
            assert!(memory["details"]["rss_bytes"].as_u64().expect("bytes") > 0);
            assert_eq!(memory["message"], "Process memory usage is higher than 0%");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        names,
        ["high_process_memory_usage", "high_system_memory_usage", "large_store"]
    );
    // Paging applies.
    let page = alarms(api, &token, "?activated=true&page=2&limit=2").await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        page["meta"],
        json!({"page": 2, "limit": 2, "count": 3, "hasnext": false})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cpu_alarm_follows_both_watermarks() {
    // A 0% high watermark: any CPU use over the interval raises it (a busy thread makes sure
    // there is some).
    let (server, api) = start(&[
        ("PORTICO_SYSMON__OS__CPU_CHECK_INTERVAL", "100ms"),
        ("PORTICO_SYSMON__OS__CPU_HIGH_WATERMARK", "0"),
        ("PORTICO_SYSMON__OS__CPU_LOW_WATERMARK", "0"),
        ("PORTICO_SYSMON__OS__MEM_CHECK_INTERVAL", "disabled"),
    ])
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spin = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let token = admin_token(api).await;
    let mut found = Value::Null;
    for _ in 0..50 {
        let listed = alarms(api, &token, "?activated=true").await;
        if listed["meta"]["count"] == 1 {
            found = listed["data"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = spin.join();
    assert_eq!(found["name"], "high_cpu_usage", "{found}");
    assert_eq!(found["message"], "CPU usage is higher than 0%");
    assert_eq!(found["details"]["high_watermark"], 0);
    assert_eq!(found["details"]["low_watermark"], 0);
    assert!(found["details"]["usage"].as_f64().expect("usage") > 0.0);
    // Never below a 0% low watermark: it stays active.
    assert!(server.broker().alarms().is_active("high_cpu_usage"), "still active");
    server.shutdown().await;
}

#[tokio::test]
async fn the_broker_api_publishes_to_sys() {
    let (server, _api) = start(&[
        ("PORTICO_SYSMON__OS__CPU_CHECK_INTERVAL", "disabled"),
        ("PORTICO_SYSMON__OS__MEM_CHECK_INTERVAL", "disabled"),
    ])
    .await;
    let mut watcher = mqtt(&server, "watcher").await;
    watcher.subscribe("$SYS/brokers/+/alarms/activate").await;
    let details = json!({"k": "v"}).as_object().cloned().unwrap_or_default();
    assert!(server.broker().alarms().activate("custom", details.clone(), "m"));
    assert!(
        !server.broker().alarms().activate("custom", details, "again"),
        "already active"
    );
    let (_, payload) = next_alarm(&mut watcher).await;
    assert_eq!(payload["name"], "custom");
    assert_eq!(payload["details"], json!({"k": "v"}));
    // The second activation published nothing: the next message is a new alarm's.
    assert!(server.broker().alarms().deactivate("custom"));
    assert!(server.broker().alarms().activate("other", Default::default(), "m"));
    let (_, payload) = next_alarm(&mut watcher).await;
    assert_eq!(payload["name"], "other");
    match recv_within(&mut watcher, Duration::from_millis(200)).await {
        None => {}
        Some(packet) => panic!("unexpected {packet:?}"),
    }
    server.shutdown().await;
}

/// The next packet within `wait`, if any.
async fn recv_within(client: &mut Client, wait: Duration) -> Option<Packet> {
    tokio::time::timeout(wait, client.recv()).await.ok().flatten()
}
