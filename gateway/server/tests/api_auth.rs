//! The HTTP API's authentication users and authorization rules against a real server: users
//! added, changed, imported and deleted through the API decide whether real MQTT clients get
//! in; rules added and removed through the API deny and allow again their SUBSCRIBE and
//! PUBLISH; both survive a restart; bad input is a 400 and an unknown authenticator a 404.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use bytestring::ByteString;
use portico::Server;
use portico::config::Config;
use portico_mqtt::{Packet, PacketId, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions};
use serde_json::{Value, json};
use support::http::{Auth, Response, admin_token, api_env, call};
use support::{BUILTIN_USERS_AND_RULES_CONFIG, Client, addr, config_dir, mqtt_login};
use tokio::net::TcpStream;

const AUTHN: &str = "/api/v5/authentication/password_based%3Abuilt_in_database";
const RULES: &str = "/api/v5/authorization/sources/built_in_database/rules";

/// A fresh directory with the configuration: built-in users (a fast hash: the tests run
/// unoptimised), no anonymous clients, built-in rules then acl.conf's defaults.
fn setup(name: &str) -> PathBuf {
    config_dir(&format!("api-auth-{name}"), BUILTIN_USERS_AND_RULES_CONFIG)
}

async fn start(dir: &Path) -> (Server, SocketAddr, String) {
    let mut env = api_env();
    env.push(("PORTICO_MQTT__ALLOW_ANONYMOUS".to_owned(), "false".to_owned()));
    env.push((
        "PORTICO_NODE__DATA_DIR".to_owned(),
        dir.join("data").display().to_string(),
    ));
    let config = Config::load(Some(&dir.join("portico.toml")), env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    (server, api, token)
}

/// An API caller with a token.
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> Response {
        call(self.addr, "GET", path, Auth::Bearer(&self.token), None).await
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> Response {
        call(self.addr, method, path, Auth::Bearer(&self.token), Some(body)).await
    }

    async fn delete(&self, path: &str) -> Response {
        call(self.addr, "DELETE", path, Auth::Bearer(&self.token), None).await
    }
}

async fn connect_code(server: &Server, user: &str, password: &str) -> Option<ReasonCode> {
    mqtt_login(server, &format!("{user}-probe"), user, password).await.1
}

async fn subscribe(client: &mut Client, filter: &str, packet_id: u16) -> ReasonCode {
    client
        .send(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(packet_id).expect("non-zero"),
            filters: vec![(
                ByteString::from(filter.to_owned()),
                SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    ..Default::default()
                },
            )],
            properties: Default::default(),
        }))
        .await;
    match client.recv().await {
        Some(Packet::SubAck(ack)) => ack.reason_codes[0],
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

async fn publish(client: &mut Client, topic: &str, packet_id: u16) -> ReasonCode {
    client
        .send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteString::from(topic.to_owned()),
            packet_id: PacketId::new(packet_id),
            payload: Bytes::from_static(b"x"),
            properties: Default::default(),
        }))
        .await;
    match client.recv().await {
        Some(Packet::PubAck(ack)) => ack.reason_code,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn assert_status(answer: &Response, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.text());
}

fn assert_no_secret(answer: &Response) {
    let text = answer.text();
    assert!(!text.contains("password_hash") && !text.contains("salt\""), "{text}");
    assert!(!text.contains("secret-"), "a password in {text}");
}

#[tokio::test]
async fn users_through_the_api_decide_who_connects_and_survive_a_restart() {
    let dir = setup("users");
    let (server, addr, token) = start(&dir).await;
    let api = Api { addr, token };

    let chain = api.get("/api/v5/authentication").await;
    assert_status(&chain, 200);
    assert_eq!(chain.json()[0]["id"], "password_based:built_in_database");
    assert_eq!(chain.json()[0]["mechanism"], "password_based");
    assert_eq!(chain.json()[0]["backend"], "built_in_database");
    assert_eq!(chain.json()[0]["enable"], true);
    let one = api.get(AUTHN).await;
    assert_status(&one, 200);
    assert_eq!(one.json()["password_hash_algorithm"]["name"], "sha256");

    // Unknown: the chain has no say, and anonymous clients are refused.
    assert_eq!(
        connect_code(&server, "alice", "secret-a").await,
        Some(ReasonCode::NotAuthorized)
    );
    let created = api
        .send(
            "POST",
            &format!("{AUTHN}/users"),
            json!({"user_id": "alice", "password": "secret-a"}),
        )
        .await;
    assert_status(&created, 201);
    assert_eq!(created.json(), json!({"user_id": "alice", "is_superuser": false}));
    assert_no_secret(&created);
    let again = api
        .send(
            "POST",
            &format!("{AUTHN}/users"),
            json!({"user_id": "alice", "password": "secret-b"}),
        )
        .await;
    assert_status(&again, 409);
    assert_eq!(again.json()["code"], "ALREADY_EXISTS");
    assert_eq!(
        connect_code(&server, "alice", "secret-a").await,
        Some(ReasonCode::Success)
    );
    assert_eq!(
        connect_code(&server, "alice", "wrong").await,
        Some(ReasonCode::BadUserNameOrPassword)
    );

    // A new password replaces the old one.
    let changed = api
        .send(
            "PUT",
            &format!("{AUTHN}/users/alice"),
            json!({"password": "secret-c", "is_superuser": true}),
        )
        .await;
    assert_status(&changed, 200);
    assert_eq!(changed.json(), json!({"user_id": "alice", "is_superuser": true}));
    assert_eq!(
        connect_code(&server, "alice", "secret-a").await,
        Some(ReasonCode::BadUserNameOrPassword)
    );
    assert_eq!(
        connect_code(&server, "alice", "secret-c").await,
        Some(ReasonCode::Success)
    );

    let imported = api
        .send(
            "POST",
            &format!("{AUTHN}/import_users?type=plain"),
            json!([
                {"user_id": "bob", "password": "secret-bob"},
                {"user_id": "carol", "password": "secret-carol", "is_superuser": true},
                {"user_id": "alice", "password": "secret-x"},
                {"password": "secret-nobody"},
            ]),
        )
        .await;
    assert_status(&imported, 200);
    let report = imported.json();
    assert_eq!(
        (
            &report["total"],
            &report["success"],
            &report["skipped"],
            &report["failed"]
        ),
        (&json!(4), &json!(2), &json!(1), &json!(1)),
        "{report}"
    );
    assert_eq!(
        connect_code(&server, "bob", "secret-bob").await,
        Some(ReasonCode::Success)
    );
    // The import skipped alice: her password is unchanged.
    assert_eq!(
        connect_code(&server, "alice", "secret-c").await,
        Some(ReasonCode::Success)
    );

    let page = api.get(&format!("{AUTHN}/users?limit=2")).await;
    assert_status(&page, 200);
    assert_no_secret(&page);
    assert_eq!(
        page.json()["meta"],
        json!({"page": 1, "limit": 2, "count": 3, "hasnext": true})
    );
    assert_eq!(
        page.json()["data"][0],
        json!({"user_id": "alice", "is_superuser": true})
    );
    let supers = api.get(&format!("{AUTHN}/users?is_superuser=true")).await;
    let supers = supers.json();
    let ids: Vec<&str> = supers["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|u| u["user_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["alice", "carol"]);
    let like = api.get(&format!("{AUTHN}/users?like_user_id=ar")).await;
    assert_eq!(like.json()["meta"]["count"], 1);
    assert_eq!(like.json()["data"][0]["user_id"], "carol");
    let bob = api.get(&format!("{AUTHN}/users/bob")).await;
    assert_status(&bob, 200);
    assert_eq!(bob.json(), json!({"user_id": "bob", "is_superuser": false}));

    assert_status(&api.delete(&format!("{AUTHN}/users/alice")).await, 204);
    assert_eq!(
        connect_code(&server, "alice", "secret-c").await,
        Some(ReasonCode::NotAuthorized)
    );
    let gone = api.get(&format!("{AUTHN}/users/alice")).await;
    assert_status(&gone, 404);
    assert_eq!(gone.json()["code"], "NOT_FOUND");
    assert_status(&api.delete(&format!("{AUTHN}/users/alice")).await, 404);

    // A rule for everyone, kept across the restart too.
    let all = api
        .send(
            "POST",
            &format!("{RULES}/all"),
            json!({"rules": [{"topic": "secret/#", "permission": "deny", "action": "subscribe"}]}),
        )
        .await;
    assert_status(&all, 204);

    server.shutdown().await;
    let (server, addr, token) = start(&dir).await;
    let api = Api { addr, token };
    assert_eq!(
        mqtt_login(&server, "bob-after", "bob", "secret-bob").await.1,
        Some(ReasonCode::Success)
    );
    assert_eq!(
        mqtt_login(&server, "carol-after", "carol", "secret-carol").await.1,
        Some(ReasonCode::Success)
    );
    assert_eq!(
        mqtt_login(&server, "alice-after", "alice", "secret-c").await.1,
        Some(ReasonCode::NotAuthorized)
    );
    assert_eq!(api.get(&format!("{AUTHN}/users")).await.json()["meta"]["count"], 2);

    let rules = api.get(&format!("{RULES}/all")).await;
    assert_eq!(
        rules.json()["rules"],
        json!([{"topic": "secret/#", "permission": "deny", "action": "subscribe", "qos": [0, 1, 2], "retain": "all"}])
    );
    let (mut bob, code) = mqtt_login(&server, "bob-1", "bob", "secret-bob").await;
    assert_eq!(code, Some(ReasonCode::Success));
    assert_eq!(subscribe(&mut bob, "secret/x", 1).await, ReasonCode::NotAuthorized);
    server.shutdown().await;
}

#[tokio::test]
async fn rules_through_the_api_deny_and_allow_again() {
    let dir = setup("rules");
    let (server, addr, token) = start(&dir).await;
    let api = Api { addr, token };
    let sources = api.get("/api/v5/authorization/sources").await;
    assert_status(&sources, 200);
    assert_eq!(sources.json()["sources"][0]["type"], "built_in_database");
    assert_eq!(sources.json()["sources"][0]["max_rules"], 100);
    assert_status(
        &api.send(
            "POST",
            &format!("{AUTHN}/users"),
            json!({"user_id": "dave", "password": "secret-d"}),
        )
        .await,
        201,
    );
    let (mut dave, code) = mqtt_login(&server, "dave-1", "dave", "secret-d").await;
    assert_eq!(code, Some(ReasonCode::Success));
    assert_eq!(subscribe(&mut dave, "t/1", 1).await, ReasonCode::Success);
    assert_eq!(publish(&mut dave, "t/2", 2).await, ReasonCode::NoMatchingSubscribers);

    // A user name's rule: the connected client is checked anew at once.
    let added = api
        .send(
            "POST",
            &format!("{RULES}/users"),
            json!([{"username": "dave", "rules": [{"topic": "t/#", "permission": "deny", "action": "all"}]}]),
        )
        .await;
    assert_status(&added, 204);
    assert_eq!(subscribe(&mut dave, "t/1", 3).await, ReasonCode::NotAuthorized);
    assert_eq!(publish(&mut dave, "t/2", 4).await, ReasonCode::NotAuthorized);
    let twice = api
        .send(
            "POST",
            &format!("{RULES}/users"),
            json!([{"username": "dave", "rules": []}]),
        )
        .await;
    assert_status(&twice, 409);
    assert_eq!(twice.json()["code"], "ALREADY_EXISTS");
    let listed = api.get(&format!("{RULES}/users?like_username=av")).await;
    assert_status(&listed, 200);
    assert_eq!(listed.json()["meta"]["count"], 1);
    assert_eq!(listed.json()["data"][0]["username"], "dave");
    assert_eq!(listed.json()["data"][0]["rules"][0]["permission"], "deny");
    let one = api.get(&format!("{RULES}/users/dave")).await;
    assert_eq!(one.json()["rules"][0]["action"], "all");

    // Replacing them with a publish-only deny lets SUBSCRIBE through again.
    let replaced = api
        .send(
            "PUT",
            &format!("{RULES}/users/dave"),
            json!({"username": "dave", "rules": [{"topic": "t/#", "permission": "deny", "action": "publish"}]}),
        )
        .await;
    assert_status(&replaced, 204);
    assert_eq!(subscribe(&mut dave, "t/1", 5).await, ReasonCode::Success);
    assert_eq!(publish(&mut dave, "t/2", 6).await, ReasonCode::NotAuthorized);
    assert_status(&api.delete(&format!("{RULES}/users/dave")).await, 204);
    assert_eq!(publish(&mut dave, "t/2", 7).await, ReasonCode::NoMatchingSubscribers);
    assert_status(&api.get(&format!("{RULES}/users/dave")).await, 404);
    assert_status(&api.delete(&format!("{RULES}/users/dave")).await, 404);

    // A client id's rule; client id rules come first, so an allow there beats the deny for all.
    let client_rule = api
        .send(
            "PUT",
            &format!("{RULES}/clients/dave-1"),
            json!({"rules": [{"topic": "c/#", "permission": "allow", "action": "subscribe", "qos": [0, 1]}]}),
        )
        .await;
    assert_status(&client_rule, 204);
    let deny_all = api
        .send(
            "POST",
            &format!("{RULES}/all"),
            json!({"rules": [{"topic": "c/#", "permission": "deny", "action": "all"}]}),
        )
        .await;
    assert_status(&deny_all, 204);
    assert_eq!(subscribe(&mut dave, "c/1", 8).await, ReasonCode::Success);
    assert_eq!(publish(&mut dave, "c/2", 9).await, ReasonCode::NotAuthorized);
    let clients = api.get(&format!("{RULES}/clients")).await;
    assert_eq!(clients.json()["data"][0]["clientid"], "dave-1");
    assert_eq!(clients.json()["data"][0]["rules"][0]["qos"], json!([0, 1]));
    assert_status(&api.delete(&format!("{RULES}/clients/dave-1")).await, 204);
    assert_eq!(subscribe(&mut dave, "c/1", 10).await, ReasonCode::NotAuthorized);
    assert_status(&api.delete(&format!("{RULES}/all")).await, 204);
    assert_eq!(subscribe(&mut dave, "c/1", 11).await, ReasonCode::Success);
    assert_eq!(api.get(&format!("{RULES}/all")).await.json(), json!({"rules": []}));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_400_and_unknown_authenticators_a_404() {
    let dir = setup("bad");
    let (server, addr, token) = start(&dir).await;
    let api = Api { addr, token };
    let users = format!("{AUTHN}/users");

    let missing = api.send("POST", &users, json!({"password": "secret-x"})).await;
    assert_status(&missing, 400);
    assert_eq!(missing.json()["code"], "BAD_REQUEST");
    assert!(missing.text().contains("user_id"), "{}", missing.text());
    let empty = api.send("POST", &users, json!({"user_id": "u", "password": ""})).await;
    assert_status(&empty, 400);
    assert!(empty.text().contains("password"), "{}", empty.text());
    let blank_id = api
        .send("POST", &users, json!({"user_id": "", "password": "secret-x"}))
        .await;
    assert_status(&blank_id, 400);
    let absent = api
        .send("PUT", &format!("{users}/nobody"), json!({"password": "secret-x"}))
        .await;
    assert_status(&absent, 404);
    let bad_type = api
        .send("POST", &format!("{AUTHN}/import_users?type=sha"), json!([]))
        .await;
    assert_status(&bad_type, 400);
    let not_array = api
        .send(
            "POST",
            &format!("{AUTHN}/import_users?type=plain"),
            json!({"user_id": "x"}),
        )
        .await;
    assert_status(&not_array, 400);

    for path in [
        "/api/v5/authentication/password_based%3Ahttp",
        "/api/v5/authentication/password_based%3Ahttp/users",
        "/api/v5/authentication/jwt/users/x",
    ] {
        let answer = api.get(path).await;
        assert_status(&answer, 404);
        assert_eq!(answer.json()["code"], "NOT_FOUND");
    }
    let unknown_post = api
        .send(
            "POST",
            "/api/v5/authentication/password_based%3Aredis/users",
            json!({"user_id": "u", "password": "secret-x"}),
        )
        .await;
    assert_status(&unknown_post, 404);

    let permission = api
        .send(
            "POST",
            &format!("{RULES}/users"),
            json!([{"username": "u", "rules": [{"topic": "t", "permission": "maybe", "action": "all"}]}]),
        )
        .await;
    assert_status(&permission, 400);
    assert!(permission.text().contains("permission"), "{}", permission.text());
    let action = api
        .send(
            "POST",
            &format!("{RULES}/all"),
            json!({"rules": [{"topic": "t", "permission": "allow", "action": "read"}]}),
        )
        .await;
    assert_status(&action, 400);
    let topic = api
        .send(
            "PUT",
            &format!("{RULES}/clients/c"),
            json!({"rules": [{"topic": "a/#/b", "permission": "allow", "action": "all"}]}),
        )
        .await;
    assert_status(&topic, 400);
    let qos = api
        .send(
            "POST",
            &format!("{RULES}/all"),
            json!({"rules": [{"topic": "t", "permission": "allow", "action": "all", "qos": [3]}]}),
        )
        .await;
    assert_status(&qos, 400);
    let no_name = api
        .send("POST", &format!("{RULES}/clients"), json!([{"rules": []}]))
        .await;
    assert_status(&no_name, 400);
    assert!(no_name.text().contains("clientid"), "{}", no_name.text());
    let mismatch = api
        .send(
            "PUT",
            &format!("{RULES}/users/a"),
            json!({"username": "b", "rules": []}),
        )
        .await;
    assert_status(&mismatch, 400);
    // Nothing bad was stored.
    assert_eq!(api.get(&format!("{RULES}/clients")).await.json()["meta"]["count"], 0);
    assert_eq!(api.get(&format!("{RULES}/users")).await.json()["meta"]["count"], 0);
    assert_eq!(api.get(&format!("{RULES}/all")).await.json(), json!({"rules": []}));
    assert_status(&api.get("/api/v5/authorization/sources/http").await, 404);
    server.shutdown().await;
}

/// POSTs `body` with its own content type (the shared client always says JSON).
async fn post_typed(api: &Api, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(api.addr).await.expect("connect to the API");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        api.addr,
        api.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text[9..12].parse().expect("status");
    let json = text
        .find('{')
        .and_then(|at| serde_json::from_str(text[at..].trim_end_matches(|c| c != '}')).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn users_import_from_csv() {
    let dir = setup("csv");
    let (server, addr, token) = start(&dir).await;
    let api = Api { addr, token };
    let (status, report) = post_typed(
        &api,
        &format!("{AUTHN}/import_users?type=plain"),
        "text/csv",
        "user_id,password,is_superuser\nerin,secret-erin,false\nfrank,secret-frank,true\n",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["success"], 2, "{report}");
    assert_eq!(
        connect_code(&server, "erin", "secret-erin").await,
        Some(ReasonCode::Success)
    );
    let frank = api.get(&format!("{AUTHN}/users/frank")).await;
    assert_eq!(frank.json(), json!({"user_id": "frank", "is_superuser": true}));
    let (status, _) = post_typed(
        &api,
        &format!("{AUTHN}/import_users?type=plain"),
        "text/csv",
        "name\nx\n",
    )
    .await;
    assert_eq!(status, 400);
    server.shutdown().await;
}
