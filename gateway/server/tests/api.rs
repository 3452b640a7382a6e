//! The HTTP API against a real server on loopback: access control, every endpoint family,
//! paging, kicking an MQTT client, publishing to an MQTT subscriber, Prometheus text, the
//! OpenAPI document.

mod support;

use std::net::SocketAddr;

use portico::Server;
use portico::config::Config;
use portico_mqtt::{Packet, ProtocolVersion, ReasonCode};
use serde_json::{Value, json};
use support::http::{Auth, Response, request};
use support::{Client, addr};
use tokio::net::TcpStream;

const PASSWORD: &str = "test-password-1";

fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PORTICO_LISTENERS__TCP__DEFAULT__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE".to_owned(), "false".to_owned()),
        (
            "PORTICO_DASHBOARD__LISTENERS__HTTP__BIND".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
        support::data_dir_env(),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn start(extra: &[(&str, &str)]) -> Server {
    let config = Config::load(None, env(extra)).expect("valid test config");
    Server::start(&config).await.expect("server starts")
}

async fn start_with_password() -> (Server, SocketAddr) {
    let server = start(&[("PORTICO_DASHBOARD__DEFAULT_PASSWORD", PASSWORD)]).await;
    let api = addr(&server, "dashboard:http");
    (server, api)
}

async fn get(api: SocketAddr, path: &str, auth: Auth<'_>) -> Response {
    request(api, "GET", path, auth, None).await
}

async fn post(api: SocketAddr, path: &str, auth: Auth<'_>, body: &Value) -> Response {
    let body = serde_json::to_vec(body).expect("JSON");
    request(api, "POST", path, auth, Some(&body)).await
}

async fn login(api: SocketAddr, username: &str, password: &str) -> Response {
    post(
        api,
        "/api/v5/login",
        Auth::None,
        &json!({"username": username, "password": password}),
    )
    .await
}

async fn token(api: SocketAddr) -> String {
    let answer = login(api, "admin", PASSWORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["token"].as_str().expect("token").to_owned()
}

async fn mqtt(server: &Server, id: &str, username: Option<&str>) -> Client {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(client.connect(id, username).await, Some(ReasonCode::Success));
    client
}

fn assert_unauthorized(answer: &Response) {
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert_eq!(answer.json()["code"], "BAD_USERNAME_OR_PWD");
}

#[tokio::test]
async fn access_is_refused_without_valid_credentials() {
    let (server, api) = start_with_password().await;
    assert_unauthorized(&get(api, "/api/v5/nodes", Auth::None).await);
    assert_unauthorized(&get(api, "/api/v5/nodes", Auth::Bearer("not-a-token")).await);
    assert_unauthorized(&get(api, "/api/v5/nodes", Auth::Basic("admin", PASSWORD)).await);
    // A wrong password and an unknown user get the very same answer.
    let wrong = login(api, "admin", "wrong-password").await;
    let unknown = login(api, "nobody", PASSWORD).await;
    assert_unauthorized(&wrong);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.status, unknown.status);

    let token = token(api).await;
    assert_eq!(get(api, "/api/v5/nodes", Auth::Bearer(&token)).await.status, 200);
    let out = post(
        api,
        "/api/v5/logout",
        Auth::Bearer(&token),
        &json!({"username": "admin"}),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text());
    assert_unauthorized(&get(api, "/api/v5/nodes", Auth::Bearer(&token)).await);
    server.shutdown().await;
}

#[tokio::test]
async fn api_keys_authenticate_with_basic_auth() {
    let (server, api) = start_with_password().await;
    let token = token(api).await;
    let created = post(
        api,
        "/api/v5/api_key",
        Auth::Bearer(&token),
        &json!({"name": "ci", "desc": "tests"}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    let key = created["api_key"].as_str().expect("api_key").to_owned();
    let secret = created["api_secret"].as_str().expect("api_secret").to_owned();
    assert_eq!(created["enable"], true);

    assert_eq!(get(api, "/api/v5/stats", Auth::Basic(&key, &secret)).await.status, 200);
    assert_unauthorized(&get(api, "/api/v5/stats", Auth::Basic(&key, "wrong")).await);
    // Keys may not manage keys.
    assert_eq!(
        get(api, "/api/v5/api_key", Auth::Basic(&key, &secret)).await.status,
        403
    );

    let listed = get(api, "/api/v5/api_key", Auth::Bearer(&token)).await.json();
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        listed[0].get("api_secret").is_none(),
        "the secret is shown only at creation"
    );
    let disabled = request(
        api,
        "PUT",
        "/api/v5/api_key/ci",
        Auth::Bearer(&token),
        Some(br#"{"enable": false}"#),
    )
    .await;
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_unauthorized(&get(api, "/api/v5/stats", Auth::Basic(&key, &secret)).await);
    let deleted = request(api, "DELETE", "/api/v5/api_key/ci", Auth::Bearer(&token), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(get(api, "/api/v5/api_key/ci", Auth::Bearer(&token)).await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn nodes_stats_metrics() {
    let (server, api) = start_with_password().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let nodes = get(api, "/api/v5/nodes", auth).await.json();
    let node = nodes[0]["node"].as_str().expect("node name").to_owned();
    assert_eq!(nodes[0]["node_status"], "running");
    assert_eq!(
        get(api, &format!("/api/v5/nodes/{node}"), auth).await.json()["node"],
        node.as_str()
    );
    assert_eq!(get(api, "/api/v5/nodes/nowhere@nohost", auth).await.status, 404);
    let stats = get(api, "/api/v5/stats", auth).await.json();
    assert_eq!(stats[0]["node"], node.as_str());
    assert!(stats[0]["connections.count"].is_u64());
    let aggregated = get(api, "/api/v5/stats?aggregate=true", auth).await.json();
    assert!(aggregated["connections.count"].is_u64());
    let metrics = get(api, "/api/v5/metrics", auth).await.json();
    assert!(metrics[0]["messages.received"].is_u64(), "{metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn clients_subscriptions_paging_and_kick() {
    let (server, api) = start_with_password().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let mut alice = mqtt(&server, "alice", Some("u-alice")).await;
    alice.subscribe("sensors/#").await;
    let mut bob = mqtt(&server, "bob", Some("u-bob")).await;
    let _carol = mqtt(&server, "carol", None).await;

    let all = get(api, "/api/v5/clients", auth).await.json();
    assert_eq!(
        all["meta"],
        json!({"page": 1, "limit": 100, "count": 3, "hasnext": false})
    );
    let first = get(api, "/api/v5/clients?limit=2&page=1", auth).await.json();
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["meta"]["hasnext"], true);
    let second = get(api, "/api/v5/clients?limit=2&page=2", auth).await.json();
    assert_eq!(second["data"][0]["clientid"], "carol");
    assert_eq!(second["meta"]["hasnext"], false);
    assert_eq!(get(api, "/api/v5/clients?limit=0", auth).await.status, 400);
    assert_eq!(get(api, "/api/v5/clients?limit=10001", auth).await.status, 400);

    let by_user = get(api, "/api/v5/clients?username=u-bob", auth).await.json();
    assert_eq!(by_user["meta"]["count"], 1);
    assert_eq!(by_user["data"][0]["clientid"], "bob");
    let like = get(api, "/api/v5/clients?like_clientid=a", auth).await.json();
    assert_eq!(like["meta"]["count"], 2, "alice and carol");
    let local = get(api, "/api/v5/clients?ip_address=127.0.0.1&conn_state=connected", auth)
        .await
        .json();
    assert_eq!(local["meta"]["count"], 3);

    let one = get(api, "/api/v5/clients/alice", auth).await.json();
    assert_eq!(one["username"], "u-alice");
    assert_eq!(one["connected"], true);
    assert_eq!(one["proto_ver"], 5);
    assert_eq!(one["subscriptions_cnt"], 1);
    assert_eq!(get(api, "/api/v5/clients/nobody", auth).await.status, 404);
    let subs = get(api, "/api/v5/clients/alice/subscriptions", auth).await.json();
    assert_eq!(subs[0]["topic"], "sensors/#");
    assert_eq!(subs[0]["qos"], 0);
    let all_subs = get(api, "/api/v5/subscriptions?match_topic=sensors/1", auth)
        .await
        .json();
    assert_eq!(all_subs["meta"]["count"], 1);
    assert_eq!(all_subs["data"][0]["clientid"], "alice");
    let none = get(api, "/api/v5/subscriptions?match_topic=other", auth).await.json();
    assert_eq!(none["meta"]["count"], 0);

    let kicked = request(api, "DELETE", "/api/v5/clients/bob", auth, None).await;
    assert_eq!(kicked.status, 204, "{}", kicked.text());
    loop {
        match bob.recv().await {
            None => break,
            Some(Packet::Disconnect(_)) => continue,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(get(api, "/api/v5/clients/bob", auth).await.status, 404);
    assert_eq!(
        request(api, "DELETE", "/api/v5/clients/bob", auth, None).await.status,
        404
    );
    drop(alice);
    server.shutdown().await;
}

#[tokio::test]
async fn publish_reaches_an_mqtt_subscriber() {
    let (server, api) = start_with_password().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let mut sub = mqtt(&server, "sub", None).await;
    sub.subscribe("api/#").await;

    let out = post(
        api,
        "/api/v5/publish",
        auth,
        &json!({"topic": "api/1", "payload": "hello"}),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert!(out.json()["id"].is_string());
    let got = sub.expect_publish().await;
    assert_eq!(&got.topic[..], "api/1");
    assert_eq!(&got.payload[..], b"hello");

    let body = json!({"topic": "api/2", "payload": "AAEC", "encoding": "base64", "qos": 1,
        "properties": {"content_type": "bin", "user_properties": {"k": "v"}}});
    assert_eq!(post(api, "/api/v5/publish", auth, &body).await.status, 200);
    let got = sub.expect_publish().await;
    assert_eq!(&got.payload[..], &[0u8, 1, 2]);

    let nobody = post(
        api,
        "/api/v5/publish",
        auth,
        &json!({"topic": "elsewhere", "payload": "x"}),
    )
    .await;
    assert_eq!(nobody.status, 202);
    assert_eq!(nobody.json()["reason_code"], 16);
    let bad = post(api, "/api/v5/publish", auth, &json!({"topic": "a/+", "payload": "x"})).await;
    assert_eq!(bad.status, 400);
    // A response topic is a topic name too, and a body is an object, not its fields in a list.
    let bad = json!({"topic": "a", "properties": {"response_topic": "r/#"}});
    let bad = post(api, "/api/v5/publish", auth, &bad).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("response_topic"), "{}", bad.text());
    let positional = post(api, "/api/v5/publish", auth, &json!(["a", "x"])).await;
    assert_eq!(positional.status, 400, "{}", positional.text());

    let bulk = json!([{"topic": "api/3", "payload": "a"}, {"topic": "api/4", "payload": "b"}]);
    let out = post(api, "/api/v5/publish/bulk", auth, &bulk).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.json().as_array().map(Vec::len), Some(2));
    assert_eq!(&sub.expect_publish().await.topic[..], "api/3");
    assert_eq!(&sub.expect_publish().await.topic[..], "api/4");

    // Bodies past the limit are refused before they are read whole.
    let big = vec![b'x'; portico_api::MAX_BODY_BYTES + 1];
    let mut body = br#"{"topic":"api/5","payload":""#.to_vec();
    body.extend_from_slice(&big);
    body.extend_from_slice(br#""}"#);
    let refused = request(api, "POST", "/api/v5/publish", auth, Some(&body)).await;
    assert_eq!(refused.status, 413);
    server.shutdown().await;
}

/// Checks the Prometheus text exposition format (see `support::prometheus`).
fn parse_prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    support::prometheus::parse(text)
}

#[tokio::test]
async fn prometheus_text_parses_without_credentials() {
    let (server, api) = start_with_password().await;
    let _client = mqtt(&server, "p1", None).await;
    for path in ["/api/v5/prometheus/stats", "/metrics"] {
        let answer = get(api, path, Auth::None).await;
        assert_eq!(answer.status, 200);
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain"))
        );
        let samples = parse_prometheus(&answer.text());
        assert_eq!(samples.get("emqx_connections_count"), Some(&1.0), "{}", answer.text());
        assert!(samples.contains_key("emqx_messages_received"));
        assert!(samples.contains_key("emqx_sessions_count"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let (server, api) = start_with_password().await;
    let token = token(api).await;
    let doc = get(api, "/api-docs", Auth::None).await.json();
    assert_eq!(doc["openapi"], "3.0.3");
    for route in portico_api::routes() {
        let method = route.method.to_ascii_lowercase();
        assert!(
            doc["paths"][route.path][&method].is_object(),
            "{} {} undocumented",
            route.method,
            route.path
        );
        // Every documented route is served: the router's fallback answers "no such path".
        let path = route
            .path
            .replace("{clientid}", "x")
            .replace("{node}", "x")
            .replace("{name}", "x")
            .replace("{username}", "x")
            .replace("{topic}", "x")
            .replace("{as}", "x")
            .replace("{who}", "x");
        let answer = request(api, route.method, &path, Auth::Bearer(&token), Some(b"{}")).await;
        assert!(
            !(answer.status == 404 && answer.text().contains("no such path")),
            "{} {} is documented but not served",
            route.method,
            route.path
        );
    }
    let unknown = get(api, "/api/v5/no-such-thing", Auth::Bearer(&token)).await;
    assert_eq!(unknown.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn the_first_password_is_generated_never_public() {
    let data = support::data_dir_env();
    let mut env = env(&[]);
    env.retain(|(k, _)| k != "PORTICO_NODE__DATA_DIR");
    env.push(data.clone());
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    for guess in ["public", "admin", ""] {
        assert_unauthorized(&login(api, "admin", guess).await);
    }
    server.shutdown().await;
    // A restart on the same store keeps the (unknown) password: still no way in with a guess,
    // and a configured default password is ignored once a user exists.
    let mut env = self::env(&[("PORTICO_DASHBOARD__DEFAULT_PASSWORD", PASSWORD)]);
    env.retain(|(k, _)| k != "PORTICO_NODE__DATA_DIR");
    env.push(data);
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server restarts");
    let api = addr(&server, "dashboard:http");
    assert_unauthorized(&login(api, "admin", PASSWORD).await);
    server.shutdown().await;
}

/// The `portico` binary with its stdout and stderr captured, the HTTP API on `api_port`.
struct Captured {
    child: std::process::Child,
    output: std::sync::mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Captured {
    fn start(data_dir: &std::path::Path, api_port: u16) -> Captured {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_portico"))
            .arg("start")
            .env_clear()
            .env("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0")
            .env("PORTICO_LISTENERS__WS__DEFAULT__ENABLE", "false")
            .env(
                "PORTICO_DASHBOARD__LISTENERS__HTTP__BIND",
                format!("127.0.0.1:{api_port}"),
            )
            .env("PORTICO_NODE__DATA_DIR", data_dir)
            // Everything the log would say, to check the password is not in it.
            .env("PORTICO_LOG__CONSOLE__LEVEL", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the portico binary starts");
        let (tx, output) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the API did not open in time");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Captured {
            child,
            output,
            lines: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.output.try_recv() {
            self.lines.push(line);
        }
    }

    /// SIGTERM, wait for the exit, then everything the process wrote.
    fn stop(mut self) -> Vec<String> {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        while let Ok(line) = self.output.recv_timeout(std::time::Duration::from_secs(2)) {
            self.lines.push(line);
        }
        std::mem::take(&mut self.lines)
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn the_one_time_password_is_printed_once_and_works() {
    let dir = support::process::fresh_dir("api-first-password");
    let port = support::process::free_port();
    let api: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut first = Captured::start(&dir, port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let password = loop {
        first.drain();
        if let Some(line) = first.lines.iter().find(|l| l.contains("one-time password: ")) {
            break line.rsplit(' ').next().expect("password").to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no one-time password printed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(password.len() >= 16, "{password}");
    assert_eq!(login(api, "admin", &password).await.status, 200);
    let output = first.stop();
    let mentions = output.iter().filter(|l| l.contains(&password)).count();
    assert_eq!(mentions, 1, "printed once, never logged: {output:#?}");

    let second = Captured::start(&dir, port);
    assert_eq!(login(api, "admin", &password).await.status, 200, "kept across restarts");
    let output = second.stop();
    assert!(output.iter().all(|l| !l.contains(&password)), "never printed again");
    assert!(output.iter().all(|l| !l.contains("one-time password")));
}

#[tokio::test]
async fn a_disconnected_persistent_session_is_listed_and_can_be_kicked() {
    use bytestring::ByteString;
    use portico_mqtt::Connect;
    let (server, api) = start_with_password().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let stream = TcpStream::connect(addr(&server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V3_1_1);
    client
        .send(&Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V3_1_1,
            clean_start: false,
            keep_alive: 60,
            client_id: ByteString::from_static("keeper"),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        })))
        .await;
    assert!(matches!(client.recv().await, Some(Packet::ConnAck(_))));
    client.subscribe("kept/#").await;
    drop(client);
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let listed = get(api, "/api/v5/clients?conn_state=disconnected", auth).await.json();
        if listed["meta"]["count"] == 1 {
            assert_eq!(listed["data"][0]["clientid"], "keeper");
            assert_eq!(listed["data"][0]["connected"], false);
            assert!(listed["data"][0]["disconnected_at"].is_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session is not listed as disconnected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let subs = get(api, "/api/v5/subscriptions?topic=kept/%23", auth).await.json();
    assert_eq!(subs["meta"]["count"], 1, "{subs}");
    assert_eq!(
        request(api, "DELETE", "/api/v5/clients/keeper", auth, None)
            .await
            .status,
        204
    );
    assert_eq!(get(api, "/api/v5/clients/keeper", auth).await.status, 404);
    let subs = get(api, "/api/v5/subscriptions", auth).await.json();
    assert_eq!(subs["meta"]["count"], 0, "the session's subscriptions ended with it");
    server.shutdown().await;
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_user_name() {
    let server = start(&[
        ("PORTICO_DASHBOARD__DEFAULT_PASSWORD", PASSWORD),
        ("PORTICO_DASHBOARD__UNSUCCESSFUL_LOGIN_MAX_ATTEMPTS", "2"),
    ])
    .await;
    let api = addr(&server, "dashboard:http");
    assert_unauthorized(&login(api, "admin", "wrong-password").await);
    assert_unauthorized(&login(api, "admin", "wrong-password").await);
    // Locked now: even the right password is refused, and the answer says why.
    let locked = login(api, "admin", PASSWORD).await;
    assert_eq!(locked.status, 429, "{}", locked.text());
    assert_eq!(locked.json()["code"], "LOGIN_LOCKED");
    // A name that does not exist locks the same way (no hint about which names are real).
    login(api, "nobody", "x-password").await;
    login(api, "nobody", "x-password").await;
    assert_eq!(login(api, "nobody", "x-password").await.status, 429);
    server.shutdown().await;
}
