//! The second increment of the HTTP API against a real server on loopback, with real MQTT
//! clients where behaviour matters: retained messages (listed, read, deleted for good),
//! bans (a banned client is refused), routes, dashboard users, and subscribing a client on its
//! behalf (later publications reach it).

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

fn env(data_dir: &(String, String)) -> Vec<(String, String)> {
    [
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0"),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE", "false"),
        ("PORTICO_DASHBOARD__LISTENERS__HTTP__BIND", "127.0.0.1:0"),
        ("PORTICO_DASHBOARD__DEFAULT_PASSWORD", PASSWORD),
        (data_dir.0.as_str(), data_dir.1.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn start_in(data_dir: &(String, String)) -> (Server, SocketAddr) {
    let config = Config::load(None, env(data_dir)).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    (server, api)
}

async fn start() -> (Server, SocketAddr) {
    start_in(&support::data_dir_env()).await
}

async fn get(api: SocketAddr, path: &str, auth: Auth<'_>) -> Response {
    request(api, "GET", path, auth, None).await
}

async fn send(api: SocketAddr, method: &str, path: &str, auth: Auth<'_>, body: &Value) -> Response {
    let body = serde_json::to_vec(body).expect("JSON");
    request(api, method, path, auth, Some(&body)).await
}

async fn post(api: SocketAddr, path: &str, auth: Auth<'_>, body: &Value) -> Response {
    send(api, "POST", path, auth, body).await
}

async fn delete(api: SocketAddr, path: &str, auth: Auth<'_>) -> Response {
    request(api, "DELETE", path, auth, None).await
}

async fn token_of(api: SocketAddr, username: &str, password: &str) -> String {
    let answer = post(
        api,
        "/api/v5/login",
        Auth::None,
        &json!({"username": username, "password": password}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["token"].as_str().expect("token").to_owned()
}

async fn token(api: SocketAddr) -> String {
    token_of(api, "admin", PASSWORD).await
}

/// An MQTT 5 client's CONNACK reason (None if the server closed instead).
async fn connect(server: &Server, id: &str, username: Option<&str>) -> (Client, Option<ReasonCode>) {
    let stream = TcpStream::connect(addr(server, "tcp:default")).await.expect("connect");
    let mut client = Client::new(Box::new(stream), ProtocolVersion::V5);
    let reason = client.connect(id, username).await;
    (client, reason)
}

async fn mqtt(server: &Server, id: &str, username: Option<&str>) -> Client {
    let (client, reason) = connect(server, id, username).await;
    assert_eq!(reason, Some(ReasonCode::Success), "{id} connects");
    client
}

fn assert_error(answer: &Response, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message says why: {body}"
    );
}

/// Publishes through the API (answers 200 when someone subscribes, 202 when nobody does).
async fn publish(api: SocketAddr, auth: Auth<'_>, topic: &str, payload: &str, retain: bool) -> u16 {
    post(
        api,
        "/api/v5/publish",
        auth,
        &json!({"topic": topic, "payload": payload, "retain": retain, "qos": 1}),
    )
    .await
    .status
}

#[tokio::test]
async fn retained_messages_are_listed_read_and_deleted_for_good() {
    let data_dir = support::data_dir_env();
    let (server, api) = start_in(&data_dir).await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let mut publisher = mqtt(&server, "pub-1", Some("u-pub")).await;
    publisher
        .send(&support::process::publish(
            "keep/a",
            bytes::Bytes::from_static(b"\x00\x01kept"),
            portico_mqtt::QoS::AtLeastOnce,
            true,
            support::process::pid(1),
        ))
        .await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    assert_eq!(publish(api, auth, "gone/b", "to be deleted", true).await, 202);
    assert_eq!(publish(api, auth, "keep/c", "also kept", true).await, 202);

    // `#` leaves out the broker's own `$SYS` messages ([MQTT-4.7.2-1]).
    let listed = get(api, "/api/v5/mqtt/retainer/messages?topic=%23", auth).await.json();
    assert_eq!(listed["meta"]["count"], 3, "{listed}");
    let topics: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["topic"].as_str())
        .collect();
    assert_eq!(topics, ["gone/b", "keep/a", "keep/c"]);
    let first = &listed["data"][1];
    assert_eq!(first["from_clientid"], "pub-1");
    assert_eq!(first["qos"], 1);
    assert!(
        first["publish_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    assert!(first.get("payload").is_none(), "the list has no payloads");

    let everything = get(api, "/api/v5/mqtt/retainer/messages", auth).await.json();
    assert!(
        everything["meta"]["count"].as_u64().is_some_and(|n| n >= 3),
        "{everything}"
    );
    let paged = get(api, "/api/v5/mqtt/retainer/messages?topic=%23&page=2&limit=2", auth)
        .await
        .json();
    assert_eq!(paged["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(paged["meta"]["hasnext"], false);
    let filtered = get(api, "/api/v5/mqtt/retainer/messages?topic=keep%2F%2B", auth)
        .await
        .json();
    assert_eq!(filtered["meta"]["count"], 2, "{filtered}");
    assert_error(
        &get(api, "/api/v5/mqtt/retainer/messages?topic=a%2F%23%2Fb", auth).await,
        400,
        "BAD_TOPIC",
    );

    let one = get(api, "/api/v5/mqtt/retainer/message/keep%2Fa", auth).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["payload"], "AAFrZXB0", "base64 of the payload bytes");
    assert_error(
        &get(api, "/api/v5/mqtt/retainer/message/keep%2Fz", auth).await,
        404,
        "NOT_FOUND",
    );

    let deleted = delete(api, "/api/v5/mqtt/retainer/message/gone%2Fb", auth).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_error(
        &delete(api, "/api/v5/mqtt/retainer/message/gone%2Fb", auth).await,
        404,
        "NOT_FOUND",
    );

    // A new subscriber gets the message still kept but not the deleted one: the first
    // PUBLISH after the retained ones is a live marker.
    let mut late = mqtt(&server, "late", None).await;
    late.subscribe("gone/#").await;
    assert_eq!(publish(api, auth, "gone/marker", "live", false).await, 200);
    let got = late.expect_publish().await;
    assert_eq!(&got.topic[..], "gone/marker", "the deleted message is not delivered");
    server.shutdown().await;
    drop(late);
    drop(publisher);

    // The deletion reached the durable store: after a restart it stays deleted.
    let (server, api) = start_in(&data_dir).await;
    let again = token_of(api, "admin", PASSWORD).await;
    let auth = Auth::Bearer(&again);
    let listed = get(api, "/api/v5/mqtt/retainer/messages?topic=%23", auth).await.json();
    assert_eq!(listed["meta"]["count"], 2, "{listed}");
    assert_eq!(
        get(api, "/api/v5/mqtt/retainer/message/gone%2Fb", auth).await.status,
        404
    );
    assert_eq!(delete(api, "/api/v5/mqtt/retainer/messages", auth).await.status, 204);
    let cleared = get(api, "/api/v5/mqtt/retainer/messages?topic=%23", auth).await.json();
    assert_eq!(cleared["meta"]["count"], 0, "{cleared}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_banned_client_is_refused_at_its_next_connect() {
    let (server, api) = start().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let connected = mqtt(&server, "naughty", Some("u-1")).await;

    let ban = post(
        api,
        "/api/v5/banned",
        auth,
        &json!({"as": "clientid", "who": "naughty", "reason": "tests", "until": "2999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(ban.status, 200, "{}", ban.text());
    let ban = ban.json();
    assert_eq!(ban["by"], "mgmt_api");
    assert_eq!(ban["until"], "2999-01-01T00:00:00Z");
    assert_error(
        &post(
            api,
            "/api/v5/banned",
            auth,
            &json!({"as": "clientid", "who": "naughty"}),
        )
        .await,
        409,
        "ALREADY_EXISTS",
    );
    drop(connected);
    let (_, refused) = connect(&server, "naughty", Some("u-1")).await;
    assert_eq!(refused, Some(ReasonCode::Banned));
    // Other clients are not affected.
    let _other = mqtt(&server, "nice", Some("u-1")).await;

    // EMQX 5.4's regular-expression bans.
    let pattern = json!({"as": "clientid_re", "who": "^bot-[0-9]+$"});
    assert_eq!(post(api, "/api/v5/banned", auth, &pattern).await.status, 200);
    let (_, refused) = connect(&server, "bot-7", None).await;
    assert_eq!(refused, Some(ReasonCode::Banned));
    let (_, allowed) = connect(&server, "bot-7b", None).await;
    assert_eq!(allowed, Some(ReasonCode::Success));
    let bad = json!({"as": "username_re", "who": "(unclosed"});
    let bad = post(api, "/api/v5/banned", auth, &bad).await;
    assert_error(&bad, 400, "BAD_REQUEST");
    assert!(bad.text().contains("regular expression"), "{}", bad.text());
    let lifted = delete(api, "/api/v5/banned/clientid_re/%5Ebot-%5B0-9%5D%2B%24", auth).await;
    assert_eq!(lifted.status, 204, "{}", lifted.text());
    let (_, allowed) = connect(&server, "bot-7", None).await;
    assert_eq!(allowed, Some(ReasonCode::Success));

    let by_name = post(
        api,
        "/api/v5/banned",
        auth,
        &json!({"as": "username", "who": "u-bad", "at": 1_700_000_000}),
    )
    .await;
    assert_eq!(by_name.status, 200, "{}", by_name.text());
    assert_eq!(by_name.json()["at"], "2023-11-14T22:13:20Z");
    assert_eq!(by_name.json()["until"], "infinity");
    let (_, refused) = connect(&server, "any-id", Some("u-bad")).await;
    assert_eq!(refused, Some(ReasonCode::Banned));
    let net = post(
        api,
        "/api/v5/banned",
        auth,
        &json!({"as": "peerhost_net", "who": "192.0.2.0/24"}),
    )
    .await;
    assert_eq!(net.status, 200, "{}", net.text());
    assert_eq!(net.json()["as"], "peerhost_net");

    let listed = get(api, "/api/v5/banned?limit=2", auth).await.json();
    assert_eq!(listed["meta"]["count"], 3, "{listed}");
    assert_eq!(listed["meta"]["hasnext"], true);
    assert_eq!(listed["data"][0]["as"], "clientid");
    let one = get(api, "/api/v5/banned?username=u-bad", auth).await.json();
    assert_eq!(one["meta"]["count"], 1, "{one}");
    assert_eq!(one["data"][0]["who"], "u-bad");
    let like = get(api, "/api/v5/banned?like_peerhost_net=192.0", auth).await.json();
    assert_eq!(like["data"][0]["who"], "192.0.2.0/24", "{like}");
    assert_eq!(
        get(api, "/api/v5/banned?like_clientid=zzz", auth).await.json()["meta"]["count"],
        0
    );
    assert_error(
        &get(api, "/api/v5/banned?clientid=a&username=b", auth).await,
        400,
        "BAD_REQUEST",
    );

    for bad in [
        json!({"as": "ip", "who": "x"}),
        json!({"as": "clientid", "who": ""}),
        json!({"as": "peerhost", "who": "not-an-address"}),
        json!({"as": "peerhost_net", "who": "192.0.2.1"}),
        json!({"as": "clientid", "who": "x", "until": "next tuesday"}),
        json!({"as": "clientid", "who": "x", "until": "2001-01-01T00:00:00Z"}),
        json!({"as": "clientid", "who": "x", "at": -5}),
        json!({"who": "x"}),
    ] {
        assert_error(&post(api, "/api/v5/banned", auth, &bad).await, 400, "BAD_REQUEST");
    }

    assert_eq!(delete(api, "/api/v5/banned/clientid/naughty", auth).await.status, 204);
    assert_error(
        &delete(api, "/api/v5/banned/clientid/naughty", auth).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &delete(api, "/api/v5/banned/ip/naughty", auth).await,
        400,
        "BAD_REQUEST",
    );
    assert_eq!(
        delete(api, "/api/v5/banned/peerhost_net/192.0.2.0%2F24", auth)
            .await
            .status,
        204
    );
    let _back = mqtt(&server, "naughty", Some("u-1")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn subscribing_on_a_clients_behalf_delivers_to_it() {
    let (server, api) = start().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let mut device = mqtt(&server, "device-1", None).await;
    assert_eq!(publish(api, auth, "cmd/kept", "retained", true).await, 202);

    let out = post(
        api,
        "/api/v5/clients/device-1/subscribe",
        auth,
        &json!({"topic": "cmd/#", "qos": 1}),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(
        out.json(),
        json!({"clientid": "device-1", "topic": "cmd/#", "qos": 1, "nl": 0, "rap": 0, "rh": 0,
            "node": get(api, "/api/v5/nodes", auth).await.json()[0]["node"]})
    );
    // rh 0: the retained message comes first, then a live one.
    let got = device.expect_publish().await;
    assert_eq!((&got.topic[..], got.retain), ("cmd/kept", true));
    assert_eq!(publish(api, auth, "cmd/reboot", "now", false).await, 200);
    let got = device.expect_publish().await;
    assert_eq!(&got.topic[..], "cmd/reboot");
    assert_eq!(&got.payload[..], b"now");

    let subs = get(api, "/api/v5/clients/device-1/subscriptions", auth).await.json();
    assert_eq!(subs[0]["topic"], "cmd/#");
    assert_eq!(subs[0]["qos"], 1);
    let topics = get(api, "/api/v5/topics?topic=cmd%2F%23", auth).await.json();
    assert_eq!(topics["data"][0]["topic"], "cmd/#", "{topics}");

    let out = post(
        api,
        "/api/v5/clients/device-1/unsubscribe",
        auth,
        &json!({"topic": "cmd/#"}),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text());
    assert_eq!(publish(api, auth, "cmd/reboot", "again", false).await, 202);

    let bulk = json!([{"topic": "a/1", "rh": 2}, {"topic": "$share/g/b/+", "qos": 2, "nl": 1}]);
    let out = post(api, "/api/v5/clients/device-1/subscribe/bulk", auth, &bulk).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(out.json().as_array().map(Vec::len), Some(2));
    assert_eq!(publish(api, auth, "b/x", "shared", false).await, 200);
    assert_eq!(&device.expect_publish().await.topic[..], "b/x");
    let out = post(
        api,
        "/api/v5/clients/device-1/unsubscribe/bulk",
        auth,
        &json!([{"topic": "a/1"}, {"topic": "$share/g/b/+"}]),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text());
    assert_eq!(
        get(api, "/api/v5/clients/device-1/subscriptions", auth).await.json(),
        json!([])
    );

    let sub = json!({"topic": "x", "qos": 0});
    assert_error(
        &post(api, "/api/v5/clients/nobody/subscribe", auth, &sub).await,
        404,
        "CLIENTID_NOT_FOUND",
    );
    assert_error(
        &post(api, "/api/v5/clients/nobody/unsubscribe", auth, &json!({"topic": "x"})).await,
        404,
        "CLIENTID_NOT_FOUND",
    );
    for (bad, code) in [
        (json!({"topic": "a/#/b"}), "BAD_TOPIC"),
        (json!({"topic": "a", "qos": 3}), "BAD_REQUEST"),
        (json!({"topic": "a", "rh": 3}), "BAD_REQUEST"),
        (json!({"topic": "a", "nl": 2}), "BAD_REQUEST"),
        (json!({"qos": 1}), "BAD_REQUEST"),
    ] {
        assert_error(
            &post(api, "/api/v5/clients/device-1/subscribe", auth, &bad).await,
            400,
            code,
        );
    }
    // One bad item refuses the whole bulk request, naming it.
    let half = json!([{"topic": "ok/1"}, {"topic": "bad/#/x"}]);
    let refused = post(api, "/api/v5/clients/device-1/subscribe/bulk", auth, &half).await;
    assert_error(&refused, 400, "BAD_TOPIC");
    assert!(refused.json()["message"].as_str().is_some_and(|m| m.starts_with("[1]")));
    assert_eq!(
        get(api, "/api/v5/clients/device-1/subscriptions", auth).await.json(),
        json!([])
    );
    assert_error(
        &post(api, "/api/v5/clients/device-1/subscribe/bulk", auth, &json!([])).await,
        400,
        "BAD_REQUEST",
    );
    server.shutdown().await;
}

#[tokio::test]
async fn topics_list_the_routes() {
    let (server, api) = start().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let mut a = mqtt(&server, "a", None).await;
    a.subscribe("sensors/+/temp").await;
    a.subscribe("$share/g/jobs/#").await;
    let mut b = mqtt(&server, "b", None).await;
    b.subscribe("sensors/+/temp").await;
    b.subscribe("alerts").await;

    let listed = get(api, "/api/v5/topics", auth).await.json();
    assert_eq!(listed["meta"]["count"], 3, "one row per filter: {listed}");
    let node = listed["data"][0]["node"].as_str().expect("node").to_owned();
    let rows: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["topic"].as_str())
        .collect();
    assert_eq!(rows, ["alerts", "jobs/#", "sensors/+/temp"]);
    let paged = get(api, "/api/v5/topics?limit=1&page=3", auth).await.json();
    assert_eq!(paged["data"][0]["topic"], "sensors/+/temp");
    let filtered = get(api, "/api/v5/topics?topic=alerts", auth).await.json();
    assert_eq!(filtered["meta"]["count"], 1);
    let elsewhere = get(api, "/api/v5/topics?node=other%40host", auth).await.json();
    assert_eq!(elsewhere["meta"]["count"], 0);

    let one = get(api, "/api/v5/topics/sensors%2F%2B%2Ftemp", auth).await;
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json(), json!({"topic": "sensors/+/temp", "node": node}));
    assert_error(&get(api, "/api/v5/topics/nothing", auth).await, 404, "TOPIC_NOT_FOUND");
    assert_error(&get(api, "/api/v5/topics?limit=0", auth).await, 400, "BAD_REQUEST");
    server.shutdown().await;
}

#[tokio::test]
async fn dashboard_users_are_managed_by_users_only() {
    let (server, api) = start().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    let listed = get(api, "/api/v5/users", auth).await.json();
    assert_eq!(
        listed,
        json!([{"username": "admin", "description": "", "role": "administrator", "backend": "local"}])
    );

    let short = json!({"username": "ops", "password": "short"});
    assert_error(&post(api, "/api/v5/users", auth, &short).await, 400, "BAD_REQUEST");
    let empty = json!({"username": "", "password": "long-enough-1"});
    assert_error(&post(api, "/api/v5/users", auth, &empty).await, 400, "BAD_REQUEST");
    let ops = json!({"username": "ops", "password": "ops-password-1", "description": "on call"});
    let created = post(api, "/api/v5/users", auth, &ops).await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.json()["description"], "on call");
    assert_error(&post(api, "/api/v5/users", auth, &ops).await, 409, "ALREADY_EXISTS");
    let ops_token = token_of(api, "ops", "ops-password-1").await;

    let changed = send(
        api,
        "PUT",
        "/api/v5/users/ops",
        auth,
        &json!({"description": "night shift"}),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let listed = get(api, "/api/v5/users", auth).await.json();
    assert_eq!(listed[1]["username"], "ops");
    assert_eq!(listed[1]["description"], "night shift");
    assert_error(
        &send(api, "PUT", "/api/v5/users/nobody", auth, &json!({"description": "x"})).await,
        404,
        "USER_NOT_FOUND",
    );

    // API keys may not manage users.
    let key = post(api, "/api/v5/api_key", auth, &json!({"name": "ci"})).await.json();
    let key = Auth::Basic(
        key["api_key"].as_str().expect("key"),
        key["api_secret"].as_str().expect("secret"),
    );
    assert_error(&get(api, "/api/v5/users", key).await, 403, "FORBIDDEN");
    assert_error(&post(api, "/api/v5/users", key, &ops).await, 403, "FORBIDDEN");
    assert_error(&delete(api, "/api/v5/users/ops", key).await, 403, "FORBIDDEN");

    // Nobody deletes themselves; with two users left, one may delete the other.
    assert_error(&delete(api, "/api/v5/users/admin", auth).await, 400, "BAD_REQUEST");
    assert_eq!(delete(api, "/api/v5/users/ops", auth).await.status, 204);
    assert_eq!(
        get(api, "/api/v5/nodes", Auth::Bearer(&ops_token)).await.status,
        401,
        "the deleted user's token ends"
    );
    assert_error(&delete(api, "/api/v5/users/ops", auth).await, 404, "USER_NOT_FOUND");
    // The last user is the caller: still refused.
    assert_error(&delete(api, "/api/v5/users/admin", auth).await, 400, "BAD_REQUEST");
    assert_eq!(
        get(api, "/api/v5/users", auth).await.json().as_array().map(Vec::len),
        Some(1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_retained_message_deleted_while_a_client_waits_is_not_redelivered() {
    // The MQTT view of deletion: a client that re-subscribes after the deletion gets nothing
    // for the topic, while a client subscribing before it got the message.
    let (server, api) = start().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    assert_eq!(publish(api, auth, "state/door", "open", true).await, 202);
    let mut early = mqtt(&server, "early", None).await;
    early.subscribe("state/#").await;
    assert_eq!(&early.expect_publish().await.payload[..], b"open");
    assert_eq!(
        delete(api, "/api/v5/mqtt/retainer/message/state%2Fdoor", auth)
            .await
            .status,
        204
    );
    early
        .send(&Packet::Unsubscribe(portico_mqtt::Unsubscribe {
            packet_id: support::process::pid(7),
            filters: vec!["state/#".into()],
            user_properties: Vec::new(),
        }))
        .await;
    assert!(matches!(early.recv().await, Some(Packet::UnsubAck(_))));
    early.subscribe("state/#").await;
    assert_eq!(publish(api, auth, "state/window", "shut", false).await, 200);
    assert_eq!(&early.expect_publish().await.topic[..], "state/window");
    server.shutdown().await;
}

#[tokio::test]
async fn every_ban_is_lifted_and_authorization_caches_are_dropped() {
    let (server, api) = start().await;
    let token = token(api).await;
    let auth = Auth::Bearer(&token);
    for who in ["a", "b"] {
        let ban = post(api, "/api/v5/banned", auth, &json!({"as": "clientid", "who": who})).await;
        assert_eq!(ban.status, 200, "{}", ban.text());
    }
    assert_eq!(delete(api, "/api/v5/banned", auth).await.status, 204);
    assert_eq!(get(api, "/api/v5/banned", auth).await.json()["meta"]["count"], 0);
    let (_client, code) = connect(&server, "a", None).await;
    assert_eq!(code, Some(ReasonCode::Success), "no longer banned");

    let _mqtt = mqtt(&server, "cached", None).await;
    let cache = "/api/v5/clients/cached/authorization/cache";
    assert_eq!(delete(api, cache, auth).await.status, 204);
    let unknown = delete(api, "/api/v5/clients/nobody/authorization/cache", auth).await;
    assert_error(&unknown, 404, "CLIENTID_NOT_FOUND");
    assert_eq!(delete(api, "/api/v5/authorization/cache", auth).await.status, 204);
    server.shutdown().await;
}
