//! Data export and import (`/api/v5/data`) between two real servers: users, rules, a ban, a
//! retained message, a dashboard user, an API key and a PSK identity are made on one node,
//! exported, downloaded, uploaded to a second node with a fresh data directory and imported;
//! there the MQTT user connects with the imported password and receives the retained message,
//! the dashboard user logs in, the API key works. The second node has no PSK database, so the
//! import reports that table as failed while the others arrive. Bad uploads and names are 400.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use portico::Server;
use portico::config::Config;
use portico_mqtt::{QoS, ReasonCode};
use serde_json::{Value, json};
use support::http::{Auth, Response, admin_token, api_env, call, request, request_typed};
use support::{BUILTIN_USERS_AND_RULES_CONFIG, addr, config_dir, mqtt_login};

const AUTHN: &str = "/api/v5/authentication/password_based%3Abuilt_in_database/users";
const RULES: &str = "/api/v5/authorization/sources/built_in_database/rules/users";

/// A fresh directory with the configuration: built-in users (a fast hash), no anonymous
/// clients, built-in rules.
fn setup(name: &str) -> PathBuf {
    config_dir(&format!("api-data-{name}"), BUILTIN_USERS_AND_RULES_CONFIG)
}

async fn start(dir: &Path, psk: bool) -> (Server, SocketAddr, String) {
    let mut env = api_env();
    env.push(("PORTICO_MQTT__ALLOW_ANONYMOUS".to_owned(), "false".to_owned()));
    env.push((
        "PORTICO_NODE__DATA_DIR".to_owned(),
        dir.join("data").display().to_string(),
    ));
    if psk {
        env.push(("PORTICO_PSK_AUTHENTICATION__ENABLE".to_owned(), "true".to_owned()));
    }
    let config = Config::load(Some(&dir.join("portico.toml")), env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    (server, api, token)
}

async fn ok(api: SocketAddr, method: &str, path: &str, token: &str, body: Option<Value>) -> Response {
    let answer = call(api, method, path, Auth::Bearer(token), body).await;
    assert!(
        (200..300).contains(&answer.status),
        "{method} {path}: {} {}",
        answer.status,
        answer.text()
    );
    answer
}

/// A multipart/form-data body with one file field.
fn multipart(field: &str, filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "test-boundary-7d0c1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(api: SocketAddr, token: &str, field: &str, filename: &str, data: &[u8]) -> Response {
    let (content_type, body) = multipart(field, filename, data);
    request_typed(
        api,
        "POST",
        "/api/v5/data/files",
        Auth::Bearer(token),
        Some((&content_type, &body)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_download_upload_import_between_nodes() {
    let dir_a = setup("a");
    let (server_a, api_a, token_a) = start(&dir_a, true).await;

    // The state to carry over.
    let alice = json!({"user_id": "alice", "password": "alice-pass", "is_superuser": false});
    ok(api_a, "POST", AUTHN, &token_a, Some(alice)).await;
    let rules = json!([{"username": "alice", "rules": [
        {"topic": "secret/#", "permission": "deny", "action": "all"}
    ]}]);
    ok(api_a, "POST", RULES, &token_a, Some(rules)).await;
    let ban = json!({"as": "clientid", "who": "evil-device", "reason": "tests"});
    ok(api_a, "POST", "/api/v5/banned", &token_a, Some(ban)).await;
    let retained = json!({"topic": "config/site", "payload": "v42", "qos": 1, "retain": true});
    ok(api_a, "POST", "/api/v5/publish", &token_a, Some(retained)).await;
    let ops = json!({"username": "ops", "password": "ops-password-1", "description": "operations"});
    ok(api_a, "POST", "/api/v5/users", &token_a, Some(ops)).await;
    let key = ok(
        api_a,
        "POST",
        "/api/v5/api_key",
        &token_a,
        Some(json!({"name": "deploy"})),
    )
    .await
    .json();
    let (api_key, secret) = (
        key["api_key"].as_str().expect("api_key").to_owned(),
        key["api_secret"].as_str().expect("secret").to_owned(),
    );
    let psk = json!({"identity": "sensor-1", "key": "0123456789abcdef"});
    ok(api_a, "POST", "/api/v5/psk", &token_a, Some(psk)).await;

    // API keys may not export (a backup holds every password hash).
    let refused = call(
        api_a,
        "POST",
        "/api/v5/data/export",
        Auth::Basic(&api_key, &secret),
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());

    let unknown = call(
        api_a,
        "POST",
        "/api/v5/data/export",
        Auth::Bearer(&token_a),
        Some(json!({"table_sets": ["nope"]})),
    )
    .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text());

    let exported = ok(api_a, "POST", "/api/v5/data/export", &token_a, None).await.json();
    let filename = exported["filename"].as_str().expect("filename").to_owned();
    assert!(
        filename.starts_with("portico-export-") && filename.ends_with(".tar.gz"),
        "{exported}"
    );
    assert_eq!(exported["node"], "portico@127.0.0.1");
    assert!(exported["size"].as_u64().expect("size") > 0);
    let on_disk = dir_a.join("data").join("backup").join(&filename);
    assert_eq!(exported["path"], on_disk.display().to_string());
    assert!(on_disk.is_file());

    let files = ok(api_a, "GET", "/api/v5/data/files", &token_a, None).await.json();
    assert_eq!(files["meta"]["count"], 1, "{files}");
    assert_eq!(files["data"][0]["filename"], filename.as_str());

    let download = ok(api_a, "GET", &format!("/api/v5/data/files/{filename}"), &token_a, None).await;
    assert_eq!(download.header("content-type"), Some("application/octet-stream"));
    let backup = download.body.clone();
    assert_eq!(backup, std::fs::read(&on_disk).expect("backup file"));
    server_a.shutdown().await;

    // A second node, empty but for a user alice with another password and a user bob.
    let dir_b = setup("b");
    let (server_b, api_b, token_b) = start(&dir_b, false).await;
    let other = json!({"user_id": "alice", "password": "old-password"});
    ok(api_b, "POST", AUTHN, &token_b, Some(other)).await;
    ok(
        api_b,
        "POST",
        AUTHN,
        &token_b,
        Some(json!({"user_id": "bob", "password": "bob-pass"})),
    )
    .await;

    // Hostile uploads.
    let bad_name = upload(api_b, &token_b, "filename", "../escape.tar.gz", &backup).await;
    assert_eq!(bad_name.status, 400, "{}", bad_name.text());
    let wrong_field = upload(api_b, &token_b, "file", "x.tar.gz", &backup).await;
    assert_eq!(wrong_field.status, 400, "{}", wrong_field.text());
    let garbage = upload(api_b, &token_b, "filename", "garbage.tar.gz", b"not a backup").await;
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    assert!(garbage.text().contains("garbage.tar.gz"), "{}", garbage.text());
    // Over the 1 MiB every other route takes: still read (and refused as no backup), not 413.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..2 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let large = upload(api_b, &token_b, "filename", "large.tar.gz", &noise).await;
    assert_eq!(large.status, 400, "{}", large.text());
    assert!(large.text().contains("not a readable .tar.gz"), "{}", large.text());
    let not_multipart = call(
        api_b,
        "POST",
        "/api/v5/data/files",
        Auth::Bearer(&token_b),
        Some(json!({"filename": "x"})),
    )
    .await;
    assert_eq!(not_multipart.status, 400, "{}", not_multipart.text());
    let traversal = call(
        api_b,
        "GET",
        "/api/v5/data/files/..%2Fportico.toml",
        Auth::Bearer(&token_b),
        None,
    )
    .await;
    assert_eq!(traversal.status, 400, "{}", traversal.text());
    let missing = call(
        api_b,
        "POST",
        "/api/v5/data/import",
        Auth::Bearer(&token_b),
        Some(json!({"filename": "missing.tar.gz"})),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    let listed = ok(api_b, "GET", "/api/v5/data/files", &token_b, None).await.json();
    assert_eq!(listed["meta"]["count"], 0, "refused uploads are not kept: {listed}");

    let uploaded = upload(api_b, &token_b, "filename", &filename, &backup).await;
    assert_eq!(uploaded.status, 204, "{}", uploaded.text());
    let again = upload(api_b, &token_b, "filename", &filename, &backup).await;
    assert_eq!(again.status, 409, "{}", again.text());

    // Node B has no PSK database: that table fails, every other one is imported.
    let import = call(
        api_b,
        "POST",
        "/api/v5/data/import",
        Auth::Bearer(&token_b),
        Some(json!({"filename": filename})),
    )
    .await;
    assert_eq!(import.status, 400, "{}", import.text());
    let report = import.json();
    assert!(report["message"].as_str().expect("message").contains("psk"), "{report}");
    assert!(report["tables"]["psk"]["error"].is_string(), "{report}");
    assert_eq!(report["tables"]["builtin_authn"]["imported"], 1, "{report}");
    assert_eq!(report["tables"]["banned"]["imported"], 1, "{report}");
    assert_eq!(report["tables"]["retained_messages"]["imported"], 1, "{report}");
    assert_eq!(report["tables"]["api_keys"]["imported"], 1, "{report}");
    assert_eq!(report["tables"]["dashboard_users"]["imported"], 2, "{report}");
    // The admin's record was replaced by node A's (same password, another salt): its
    // sessions ended, as after any password change.
    assert_eq!(
        call(api_b, "GET", "/api/v5/users", Auth::Bearer(&token_b), None)
            .await
            .status,
        401
    );
    let token_b = admin_token(api_b).await;

    // Upsert: alice's password is the exported one, bob is still there.
    assert_eq!(
        mqtt_login(&server_b, "a-old", "alice", "old-password").await.1,
        Some(ReasonCode::BadUserNameOrPassword)
    );
    assert_eq!(
        mqtt_login(&server_b, "b-1", "bob", "bob-pass").await.1,
        Some(ReasonCode::Success)
    );
    let (mut alice, code) = mqtt_login(&server_b, "alice-1", "alice", "alice-pass").await;
    assert_eq!(code, Some(ReasonCode::Success));
    alice.subscribe_with("config/#", QoS::AtLeastOnce).await;
    let message = alice.expect_publish().await;
    assert_eq!(message.topic, "config/site");
    assert_eq!(&message.payload[..], b"v42");
    assert!(message.retain);

    let rules = ok(api_b, "GET", &format!("{RULES}/alice"), &token_b, None).await.json();
    assert_eq!(rules["rules"][0]["topic"], "secret/#", "{rules}");
    let bans = ok(api_b, "GET", "/api/v5/banned", &token_b, None).await.json();
    assert_eq!(bans["data"][0]["who"], "evil-device", "{bans}");
    assert_eq!(bans["data"][0]["reason"], "tests", "{bans}");

    // The dashboard user logs in with the exported password; the API key works.
    let login = call(
        api_b,
        "POST",
        "/api/v5/login",
        Auth::None,
        Some(json!({"username": "ops", "password": "ops-password-1"})),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let users = ok(api_b, "GET", "/api/v5/users", &token_b, None).await.json();
    let ops = users
        .as_array()
        .and_then(|u| u.iter().find(|u| u["username"] == "ops"))
        .cloned()
        .expect("ops listed");
    assert_eq!(ops["description"], "operations");
    let with_key = request(api_b, "GET", "/api/v5/nodes", Auth::Basic(&api_key, &secret), None).await;
    assert_eq!(with_key.status, 200, "{}", with_key.text());

    // Importing again changes nothing but still reports the missing PSK database; deleting
    // the file removes it from the list.
    let path = format!("/api/v5/data/files/{filename}");
    ok(api_b, "DELETE", &path, &token_b, None).await;
    let gone = call(api_b, "DELETE", &path, Auth::Bearer(&token_b), None).await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    server_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_chosen_tables_imports_cleanly() {
    let dir = setup("tables");
    let (server, api, token) = start(&dir, false).await;
    let alice = json!({"user_id": "alice", "password": "alice-pass"});
    ok(api, "POST", AUTHN, &token, Some(alice)).await;
    let exported = ok(
        api,
        "POST",
        "/api/v5/data/export",
        &token,
        Some(json!({"table_sets": ["builtin_authn", "banned"]})),
    )
    .await
    .json();
    let filename = exported["filename"].as_str().expect("filename").to_owned();
    ok(api, "DELETE", &format!("{AUTHN}/alice"), &token, None).await;
    // An unknown user is not authorized (no anonymous clients).
    assert_eq!(
        mqtt_login(&server, "a-1", "alice", "alice-pass").await.1,
        Some(ReasonCode::NotAuthorized)
    );
    let import = call(
        api,
        "POST",
        "/api/v5/data/import",
        Auth::Bearer(&token),
        Some(json!({"filename": filename})),
    )
    .await;
    assert_eq!(import.status, 204, "{}", import.text());
    assert_eq!(
        mqtt_login(&server, "a-2", "alice", "alice-pass").await.1,
        Some(ReasonCode::Success)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_a_password_without_the_old_one() {
    let dir = setup("passwd");
    let (server, api, token) = start(&dir, false).await;
    let ops = json!({"username": "ops", "password": "ops-password-1"});
    ok(api, "POST", "/api/v5/users", &token, Some(ops)).await;
    let short = call(
        api,
        "PUT",
        "/api/v5/users/ops/password",
        Auth::Bearer(&token),
        Some(json!({"password": "short"})),
    )
    .await;
    assert_eq!(short.status, 400, "{}", short.text());
    let unknown = call(
        api,
        "PUT",
        "/api/v5/users/nobody/password",
        Auth::Bearer(&token),
        Some(json!({"password": "long-enough-1"})),
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    ok(
        api,
        "PUT",
        "/api/v5/users/ops/password",
        &token,
        Some(json!({"password": "new-password-2"})),
    )
    .await;
    let login = |password: &'static str| {
        call(
            api,
            "POST",
            "/api/v5/login",
            Auth::None,
            Some(json!({"username": "ops", "password": password})),
        )
    };
    assert_eq!(login("ops-password-1").await.status, 401);
    assert_eq!(login("new-password-2").await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_mode_has_no_backups() {
    let mut env = api_env();
    env.push(("PORTICO_DURABLE_SESSIONS__MODE".to_owned(), "memory".to_owned()));
    let config = Config::load(None, env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let api = addr(&server, "dashboard:http");
    let token = admin_token(api).await;
    for (method, path) in [("POST", "/api/v5/data/export"), ("GET", "/api/v5/data/files")] {
        let answer = call(api, method, path, Auth::Bearer(&token), None).await;
        assert_eq!(answer.status, 400, "{method} {path}: {}", answer.text());
        assert!(answer.text().contains("memory mode"), "{}", answer.text());
    }
    server.shutdown().await;
}
