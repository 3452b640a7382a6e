//! The log trace (`/api/v5/trace`) against a real server with real MQTT clients: a client id
//! trace sees the client's connect, subscribe, publish and delivery; a topic trace sees the
//! messages on its topics and nothing else; stop, delete (the file goes), bad input, the
//! download, and definitions surviving a restart.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portico::Server;
use portico::config::Config;
use portico_mqtt::{ProtocolVersion, ReasonCode};
use serde_json::{Value, json};
use support::http::{Auth, Response, admin_token, api_env, call};
use support::process::ctl;
use support::{Client, addr};
use tokio::net::TcpStream;

struct Node {
    server: Server,
    api: SocketAddr,
    token: String,
    data_dir: PathBuf,
}

async fn start_in(data_dir: &(String, String)) -> Node {
    let mut env = api_env();
    env.push(data_dir.clone());
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    Node {
        server,
        api,
        token,
        data_dir: PathBuf::from(&data_dir.1),
    }
}

impl Node {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        call(self.api, method, path, Auth::Bearer(&self.token), body).await
    }

    async fn create(&self, body: Value) -> Response {
        self.call("POST", "/api/v5/trace", Some(body)).await
    }

    async fn list(&self) -> Vec<Value> {
        let answer = self.call("GET", "/api/v5/trace", None).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json().as_array().cloned().expect("a list")
    }

    /// The whole log, read through `/log` in small pieces (so that paging is exercised).
    async fn log(&self, name: &str) -> String {
        let mut text = String::new();
        let mut position = 0;
        loop {
            let path = format!("/api/v5/trace/{name}/log?bytes=100&position={position}");
            let answer = self.call("GET", &path, None).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            let body = answer.json();
            assert_eq!(body["meta"]["bytes"], 100);
            let items = body["items"].as_str().expect("items");
            if items.is_empty() {
                return text;
            }
            text.push_str(items);
            position = body["meta"]["position"].as_u64().expect("position");
        }
    }

    /// Polls the log until every needle is in it (the writer flushes within moments).
    async fn log_with(&self, name: &str, needles: &[&str]) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            last = self.log(name).await;
            if needles.iter().all(|n| last.contains(n)) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("trace {name} never had all of {needles:?}:\n{last}");
    }

    async fn mqtt(&self, id: &str) -> Client {
        let stream = TcpStream::connect(addr(&self.server, "tcp:default"))
            .await
            .expect("connect");
        let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
        assert_eq!(client.connect(id, Some("user1")).await, Some(ReasonCode::Success));
        client
    }
}

fn trace_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("trace").join(format!("{name}.log"))
}

#[tokio::test]
async fn clientid_and_topic_traces_follow_a_real_client() {
    let node = start_in(&support::data_dir_env()).await;
    let created = node
        .create(json!({"name": "dev-1", "type": "clientid", "clientid": "dev1"}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    assert_eq!(created["name"], "dev-1");
    assert_eq!(created["type"], "clientid");
    assert_eq!(created["clientid"], "dev1");
    assert_eq!(created["status"], "running");
    assert_eq!(created["payload_encode"], "text");
    assert_eq!(created["formatter"], "text");
    let answer = node
        .create(
            json!({"name": "sensors", "type": "topic", "topic": "sensors/+", "formatter": "json",
                       "payload_encode": "hex"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    let mut dev = node.mqtt("dev1").await;
    let mut other = node.mqtt("other").await;
    dev.subscribe("cmd/#").await;
    dev.publish("sensors/temp", b"21.5").await;
    other.publish("cmd/reboot", b"now").await;
    let delivered = dev.expect_publish().await;
    assert_eq!(&delivered.topic[..], "cmd/reboot");
    other.publish("elsewhere/x", b"not traced").await;

    let log = node
        .log_with(
            "dev-1",
            &[
                "[client.connected] clientid=dev1 username=user1 peer=127.0.0.1",
                "[client.subscribe] clientid=dev1 username=user1 topic=cmd/# qos=0",
                "[message.publish] clientid=dev1",
                "topic=sensors/temp qos=0 retain=false payload=21.5",
                "[message.delivered] clientid=dev1 username=user1 from_clientid=other topic=cmd/reboot",
            ],
        )
        .await;
    assert!(!log.contains("] clientid=other"), "{log}");
    assert!(!log.contains("elsewhere"), "{log}");
    // Every line starts with a time.
    assert!(log.lines().all(|l| l.starts_with("20") && l.contains('Z')), "{log}");

    let sensors = node.log_with("sensors", &["sensors/temp"]).await;
    let lines: Vec<Value> = sensors
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        // Nobody subscribes to sensors/temp: the message is also reported dropped.
        .filter(|l| l["event"] != "message.dropped")
        .collect();
    assert_eq!(lines.len(), 1, "{sensors}");
    assert_eq!(lines[0]["event"], "message.publish");
    assert_eq!(lines[0]["clientid"], "dev1");
    assert_eq!(lines[0]["payload"], hex("21.5"));

    // The list shows both with their sizes.
    let list = node.list().await;
    assert_eq!(list.len(), 2);
    let dev_entry = list.iter().find(|t| t["name"] == "dev-1").expect("dev-1 listed");
    let node_name = dev_entry["log_size"]
        .as_object()
        .expect("log_size")
        .keys()
        .next()
        .cloned();
    assert!(node_name.is_some());
    assert!(dev_entry["log_size"][node_name.as_deref().unwrap_or_default()].as_u64() > Some(0));

    // The download is the whole file.
    let download = node.call("GET", "/api/v5/trace/dev-1/download", None).await;
    assert_eq!(download.status, 200);
    assert!(
        download
            .header("content-disposition")
            .is_some_and(|d| d.contains("dev-1.log"))
    );
    assert!(download.text().starts_with(&log[..log.find('\n').unwrap_or(0)]));

    // Stop: no more lines, the file stays.
    let stopped = node.call("PUT", "/api/v5/trace/dev-1/stop", None).await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json(), json!({"name": "dev-1", "enable": false}));
    let before = node.log("dev-1").await;
    dev.publish("sensors/temp", b"22").await;
    let _ = node.log_with("sensors", &[&hex("22")]).await;
    assert_eq!(node.log("dev-1").await, before);
    let list = node.list().await;
    let dev_entry = list.iter().find(|t| t["name"] == "dev-1").expect("dev-1 listed");
    assert_eq!(dev_entry["status"], "stopped");

    // Delete removes the file.
    let file = trace_file(&node.data_dir, "dev-1");
    assert!(file.exists());
    let deleted = node.call("DELETE", "/api/v5/trace/dev-1", None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(!file.exists());
    assert_eq!(node.call("GET", "/api/v5/trace/dev-1/log", None).await.status, 404);
    assert_eq!(node.call("DELETE", "/api/v5/trace/dev-1", None).await.status, 404);

    // Delete all.
    let cleared = node.call("DELETE", "/api/v5/trace", None).await;
    assert_eq!(cleared.status, 204);
    assert!(node.list().await.is_empty());
    assert!(!trace_file(&node.data_dir, "sensors").exists());
    node.server.shutdown().await;
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn bad_input_is_refused() {
    let node = start_in(&support::data_dir_env()).await;
    let bad = [
        json!({"name": "bad name", "type": "clientid", "clientid": "c"}),
        json!({"name": "", "type": "clientid", "clientid": "c"}),
        json!({"name": "x".repeat(201), "type": "clientid", "clientid": "c"}),
        json!({"name": "t", "type": "ruleid", "ruleid": "r"}),
        json!({"name": "t", "type": "clientid"}),
        json!({"name": "t", "type": "clientid", "clientid": ""}),
        json!({"name": "t", "type": "topic", "topic": "a/#/b"}),
        json!({"name": "t", "type": "ip_address", "ip_address": "not-an-ip"}),
        json!({"name": "t", "type": "clientid", "clientid": "c", "payload_encode": "base64"}),
        json!({"name": "t", "type": "clientid", "clientid": "c", "formatter": "xml"}),
        json!({"name": "t", "type": "clientid", "clientid": "c", "end_at": "yesterday"}),
        json!({"name": "t", "type": "clientid", "clientid": "c", "end_at": 1000}),
        json!({"type": "clientid", "clientid": "c"}),
        json!(["not", "an", "object"]),
    ];
    for body in bad {
        let answer = node.create(body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert_eq!(answer.json()["code"], "BAD_REQUEST", "{body}");
    }
    let raw = support::http::request(
        node.api,
        "POST",
        "/api/v5/trace",
        Auth::Bearer(&node.token),
        Some(b"{not json"),
    )
    .await;
    assert_eq!(raw.status, 400);

    // Duplicates: 409.
    let body = json!({"name": "t1", "type": "ip_address", "ip_address": "127.0.0.1"});
    assert_eq!(node.create(body.clone()).await.status, 200);
    let again = node.create(body).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["code"], "ALREADY_EXISTS");
    let same = node
        .create(json!({"name": "t2", "type": "ip_address", "ip_address": "127.0.0.1"}))
        .await;
    assert_eq!(same.status, 409);
    assert_eq!(same.json()["code"], "DUPLICATE_CONDITION");

    // Bad names in paths, unknown traces, other nodes, no credentials.
    assert_eq!(node.call("PUT", "/api/v5/trace/a%20b/stop", None).await.status, 400);
    assert_eq!(node.call("PUT", "/api/v5/trace/nope/stop", None).await.status, 404);
    let other = node.call("GET", "/api/v5/trace/t1/log?node=elsewhere", None).await;
    assert_eq!(other.status, 400);
    assert_eq!(other.json()["code"], "NODE_ERROR");
    assert_eq!(
        node.call("GET", "/api/v5/trace/t1/log?bytes=-1", None).await.status,
        400
    );
    let anonymous = call(node.api, "GET", "/api/v5/trace", Auth::None, None).await;
    assert_eq!(anonymous.status, 401);

    // An ip_address trace sees the clients from that address.
    let _client = node.mqtt("from-loopback").await;
    let log = node
        .log_with("t1", &["[client.connected] clientid=from-loopback"])
        .await;
    assert!(log.contains("[client.connect] clientid=from-loopback"), "{log}");
    node.server.shutdown().await;
}

#[tokio::test]
async fn traces_survive_a_restart() {
    let data_dir = support::data_dir_env();
    let node = start_in(&data_dir).await;
    let later = json!({"name": "later", "type": "topic", "topic": "a/#",
                       "start_at": "2099-01-01T00:00:00Z", "end_at": "2099-01-02T00:00:00Z"});
    let created = node.create(later).await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.json()["status"], "waiting");
    assert_eq!(created.json()["start_at"], "2099-01-01T00:00:00Z");
    assert_eq!(
        node.create(json!({"name": "stopped", "type": "clientid", "clientid": "c"}))
            .await
            .status,
        200
    );
    assert_eq!(node.call("PUT", "/api/v5/trace/stopped/stop", None).await.status, 200);
    node.server.shutdown().await;

    let node = start_in(&data_dir).await;
    let list = node.list().await;
    let names: Vec<&str> = list.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["later", "stopped"]);
    assert_eq!(list[0]["status"], "waiting");
    assert_eq!(list[0]["end_at"], "2099-01-02T00:00:00Z");
    assert_eq!(list[1]["status"], "stopped");
    node.server.shutdown().await;
}

/// Asserts success; stdout.
fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn ctl_trace_start_list_log_stop_delete() {
    let node = start_in(&support::data_dir_env()).await;
    let socket = node.data_dir.join("ctl.sock");

    let started = ok(&ctl(
        &socket,
        &["trace", "start", "client", "ctl-dev", "ctl-trace", "--duration", "5m"],
    )
    .await);
    assert!(started.contains("trace ctl-trace started"), "{started}");
    assert!(started.contains("clientid=ctl-dev, status=running"), "{started}");
    let topic = ok(&ctl(&socket, &["trace", "start", "topic", "a/#", "by-topic"]).await);
    assert!(topic.contains("topic=a/#"), "{topic}");

    // A 5-minute trace ends about 5 minutes from now.
    let list = node.list().await;
    let entry = list.iter().find(|t| t["name"] == "ctl-trace").expect("listed");
    assert_eq!(entry["type"], "clientid");
    assert_ne!(entry["start_at"], entry["end_at"]);

    let listed = ok(&ctl(&socket, &["trace", "list"]).await);
    assert!(
        listed.contains("Trace(ctl-trace, clientid=ctl-dev, status=running"),
        "{listed}"
    );
    assert!(listed.contains("Trace(by-topic, topic=a/#, status=running"), "{listed}");

    let _client = node.mqtt("ctl-dev").await;
    let _ = node
        .log_with("ctl-trace", &["[client.connected] clientid=ctl-dev"])
        .await;
    let log = ok(&ctl(&socket, &["trace", "log", "ctl-trace"]).await);
    assert!(log.contains("[client.connected] clientid=ctl-dev"), "{log}");

    let stopped = ok(&ctl(&socket, &["trace", "stop", "ctl-trace"]).await);
    assert_eq!(stopped, "trace ctl-trace stopped\n");
    let listed = ok(&ctl(&socket, &["trace", "list"]).await);
    assert!(
        listed.contains("Trace(ctl-trace, clientid=ctl-dev, status=stopped"),
        "{listed}"
    );

    // Errors: the API's code and message, exit 1; bad usage, exit 2.
    let duplicate = ctl(&socket, &["trace", "start", "topic", "a/#", "again"]).await;
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("DUPLICATE_CONDITION"));
    let bad = ctl(&socket, &["trace", "start", "client", "x", "bad name"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("BAD_REQUEST"));
    let duration = ctl(&socket, &["trace", "start", "client", "x", "y", "--duration", "soon"]).await;
    assert_eq!(duration.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&duration.stderr).contains("--duration"));
    assert_eq!(ctl(&socket, &["trace", "start", "client"]).await.status.code(), Some(2));

    let deleted = ok(&ctl(&socket, &["trace", "delete", "ctl-trace"]).await);
    assert_eq!(deleted, "trace ctl-trace deleted\n");
    assert!(!trace_file(&node.data_dir, "ctl-trace").exists());
    let missing = ctl(&socket, &["trace", "stop", "ctl-trace"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));
    node.server.shutdown().await;
}
