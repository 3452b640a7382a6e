//! `portico ctl`: the real binary against a real server's local control socket. Status,
//! clients (with a real MQTT client), listeners, publishing to a subscriber, retained messages,
//! bans, API errors, a node that is not running, bad usage; the socket's mode and removal, and
//! the dashboard's TCP listener still asking for credentials.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use portico::Server;
use portico::config::Config;
use portico_mqtt::{Packet, ProtocolVersion, ReasonCode};
use serde_json::Value;
use support::http::{Auth, api_env, request};
use support::process::{ctl, portico};
use support::{Client, addr};
use tokio::net::TcpStream;

/// A server with a fresh data directory; returns it with its control socket's path.
async fn start() -> (Server, PathBuf) {
    let (key, data_dir) = support::data_dir_env();
    let mut env = api_env();
    env.push((key, data_dir.clone()));
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    (server, Path::new(&data_dir).join("ctl.sock"))
}

/// A bare HTTP/1.1 GET over the socket, without credentials; the whole answer as text.
async fn raw_get(socket: &Path, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the socket");
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

async fn mqtt(server: &Server, id: &str) -> Client {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(client.connect(id, Some("alice-user")).await, Some(ReasonCode::Success));
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_clients_and_kick() {
    let (server, socket) = start().await;
    let metadata = std::fs::metadata(&socket).expect("the control socket exists");
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "owner only");

    let mut alice = mqtt(&server, "alice").await;
    let status = ok(&ctl(&socket, &["status"]).await);
    assert!(
        status.starts_with("Node portico@127.0.0.1 running (portico "),
        "{status}"
    );
    assert!(status.contains("uptime: "), "{status}");
    assert!(status.contains("connections: 1\n"), "{status}");

    let json: Value = serde_json::from_str(&ok(&ctl(&socket, &["status", "--json"]).await)).expect("JSON");
    assert_eq!(json["node"], "portico@127.0.0.1");
    assert_eq!(json["connections"], 1);

    let list = ok(&ctl(&socket, &["clients", "list"]).await);
    assert!(
        list.starts_with("Client(alice, username=alice-user, ip_address=127.0.0.1, protocol=mqtt, proto_ver=5,"),
        "{list}"
    );
    assert!(list.contains("connected=true"), "{list}");
    let rows: Value = serde_json::from_str(&ok(&ctl(&socket, &["--json", "clients", "list"]).await)).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["clientid"], "alice");

    let show = ok(&ctl(&socket, &["clients", "show", "alice"]).await);
    assert!(
        show.lines()
            .any(|l| l.starts_with("clientid") && l.ends_with(": alice")),
        "{show}"
    );

    alice.subscribe("ctl/sub").await;
    let subs = ok(&ctl(&socket, &["subscriptions", "list", "--clientid", "alice"]).await);
    assert_eq!(subs, "alice -> topic:ctl/sub qos:0 nl:0 rap:0\n");
    let topics = ok(&ctl(&socket, &["topics", "list"]).await);
    assert_eq!(topics, "ctl/sub -> portico@127.0.0.1\n");

    assert_eq!(
        ok(&ctl(&socket, &["clients", "kick", "alice"]).await),
        "client alice kicked\n"
    );
    match alice.recv().await {
        None | Some(Packet::Disconnect(_)) => {}
        other => panic!("expected the connection to end, got {other:?}"),
    }
    assert_eq!(ok(&ctl(&socket, &["clients", "list"]).await), "");

    // An API error: its code and message, exit 1.
    let unknown = ctl(&socket, &["clients", "kick", "nobody"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).starts_with("portico ctl: CLIENTID_NOT_FOUND: "),
        "{}",
        stderr(&unknown)
    );

    server.shutdown().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_publish_and_retainer() {
    let (server, socket) = start().await;
    let listeners = ok(&ctl(&socket, &["listeners"]).await);
    let tcp = listeners
        .lines()
        .find(|l| l.starts_with("tcp:default "))
        .unwrap_or_else(|| panic!("no tcp:default in {listeners}"));
    assert!(tcp.ends_with(" running"), "{tcp}");

    let mut subscriber = mqtt(&server, "sub").await;
    subscriber.subscribe("ctl/#").await;
    let published = ok(&ctl(&socket, &["publish", "ctl/a", "hello from ctl", "--qos", "1"]).await);
    assert!(published.starts_with("published "), "{published}");
    let message = subscriber.expect_publish().await;
    assert_eq!(&*message.topic, "ctl/a");
    assert_eq!(&message.payload[..], b"hello from ctl");

    ok(&ctl(&socket, &["publish", "ctl/kept", "kept", "--retain"]).await);
    let _ = subscriber.expect_publish().await;
    let retained = ok(&ctl(&socket, &["retainer", "list"]).await);
    assert!(retained.lines().any(|l| l.starts_with("ctl/kept qos:0 ")), "{retained}");
    let shown = ok(&ctl(&socket, &["retainer", "show", "ctl/kept"]).await);
    assert!(
        shown.lines().any(|l| l.starts_with("payload") && l.ends_with(": kept")),
        "{shown}"
    );
    assert_eq!(
        ok(&ctl(&socket, &["retainer", "delete", "ctl/kept"]).await),
        "retained message on ctl/kept deleted\n"
    );
    let gone = ctl(&socket, &["retainer", "show", "ctl/kept"]).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("NOT_FOUND"), "{}", stderr(&gone));

    assert_eq!(
        ok(&ctl(&socket, &["listeners", "stop", "tcp:default"]).await),
        "listener tcp:default stopped\n"
    );
    let listeners = ok(&ctl(&socket, &["listeners"]).await);
    assert!(
        listeners
            .lines()
            .any(|l| l.starts_with("tcp:default ") && l.ends_with(" stopped")),
        "{listeners}"
    );
    ok(&ctl(&socket, &["listeners", "start", "tcp:default"]).await);

    let gateways = ok(&ctl(&socket, &["gateway", "list"]).await);
    assert!(gateways.contains("Gateway(stomp, status="), "{gateways}");
    let metrics = ok(&ctl(&socket, &["metrics"]).await);
    assert!(metrics.lines().any(|l| l.starts_with("messages.received")), "{metrics}");
    let stats = ok(&ctl(&socket, &["stats"]).await);
    assert!(stats.lines().any(|l| l.starts_with("connections.count")), "{stats}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_add_list_delete() {
    let (server, socket) = start().await;
    let added = ok(&ctl(
        &socket,
        &[
            "banned", "add", "--as", "clientid", "--who", "mallory", "--reason", "testing",
        ],
    )
    .await);
    assert_eq!(added, "banned clientid:mallory until infinity\n");
    let list = ok(&ctl(&socket, &["banned", "list"]).await);
    assert!(
        list.starts_with("clientid:mallory by:portico_ctl reason:testing at:"),
        "{list}"
    );

    // The ban is in force.
    let stream = TcpStream::connect(addr(&server, "tcp:default")).await.expect("connect");
    let mut mallory = Client::new(Box::new(stream), ProtocolVersion::V5);
    assert_eq!(mallory.connect("mallory", None).await, Some(ReasonCode::Banned));

    let duplicate = ctl(&socket, &["banned", "add", "--as", "clientid", "--who", "mallory"]).await;
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(stderr(&duplicate).contains("ALREADY_EXISTS"), "{}", stderr(&duplicate));

    assert_eq!(
        ok(&ctl(&socket, &["banned", "delete", "clientid", "mallory"]).await),
        "ban clientid:mallory lifted\n"
    );
    assert_eq!(ok(&ctl(&socket, &["banned", "list"]).await), "");
    let again = ctl(&socket, &["banned", "delete", "clientid", "mallory"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("NOT_FOUND"), "{}", stderr(&again));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_comes_from_the_configuration_and_tcp_still_needs_credentials() {
    let (server, socket) = start().await;
    let data_dir = socket.parent().expect("data dir").display().to_string();
    // No --socket: node.data_dir + node.ctl_socket, from the environment as for `start`.
    let status = portico(
        vec!["ctl".to_owned(), "status".to_owned()],
        vec![("PORTICO_NODE__DATA_DIR".to_owned(), data_dir)],
    )
    .await;
    assert!(ok(&status).starts_with("Node portico@127.0.0.1 running"));

    // No credentials on the socket; API keys are not for it (as for an API key), dashboard
    // users are (`portico ctl admins`).
    assert!(raw_get(&socket, "/api/v5/clients").await.starts_with("HTTP/1.1 200 "));
    let keys = raw_get(&socket, "/api/v5/api_key").await;
    assert!(keys.starts_with("HTTP/1.1 403 "), "{keys}");
    assert!(keys.contains("FORBIDDEN"), "{keys}");
    assert!(raw_get(&socket, "/api/v5/users").await.starts_with("HTTP/1.1 200 "));

    let api = addr(&server, "dashboard:http");
    let refused = request(api, "GET", "/api/v5/clients", Auth::None, None).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.json()["code"], "BAD_USERNAME_OR_PWD");
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_that_is_not_running_and_bad_usage() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ctl-none-{}", std::process::id()));
    let socket = dir.join("ctl.sock");
    let missing = ctl(&socket, &["status"]).await;
    assert_eq!(missing.status.code(), Some(1));
    let message = stderr(&missing);
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert_eq!(message.lines().count(), 1, "one line: {message}");

    let usage = ctl(&socket, &["clients", "frobnicate"]).await;
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    let qos = ctl(&socket, &["publish", "t", "p", "--qos", "3"]).await;
    assert_eq!(qos.status.code(), Some(2), "{}", stderr(&qos));
}
