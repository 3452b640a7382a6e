//! `portico ctl data`, `ctl admins` and `ctl users`: the real binary against a real server's
//! local control socket. Users added with `ctl users` authenticate real MQTT clients; a backup
//! made with `ctl data export` brings a deleted user back with `ctl data import` (by path and
//! by name); dashboard users added and re-passworded with `ctl admins` log in over HTTP.

mod support;

use std::path::PathBuf;
use std::process::Output;

use portico::Server;
use portico::config::Config;
use portico_mqtt::ReasonCode;
use serde_json::json;
use support::http::{Auth, api_env, call};
use support::process::ctl;
use support::{BUILTIN_USERS_CONFIG, addr, config_dir, mqtt_login};

/// A server with built-in users (a fast hash) and no anonymous clients; with its control
/// socket's path and data directory.
async fn start() -> (Server, PathBuf, PathBuf) {
    let dir = config_dir("ctl-data", BUILTIN_USERS_CONFIG);
    let data_dir = dir.join("data");
    let mut env = api_env();
    env.push(("PORTICO_MQTT__ALLOW_ANONYMOUS".to_owned(), "false".to_owned()));
    env.push(("PORTICO_NODE__DATA_DIR".to_owned(), data_dir.display().to_string()));
    let config = Config::load(Some(&dir.join("portico.toml")), env).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    (server, data_dir.join("ctl.sock"), data_dir)
}

/// Asserts success and returns stdout.
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts failure (exit 1) and returns stderr.
fn failed(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_data_and_admins() {
    let (server, socket, data_dir) = start().await;

    // MQTT users.
    assert_eq!(
        ok(&ctl(&socket, &["users", "add", "dev-1", "dev-pass", "--superuser"]).await),
        "user dev-1 added\n"
    );
    let list = ok(&ctl(&socket, &["users", "list"]).await);
    assert_eq!(list, "dev-1 superuser:true\n");
    assert_eq!(
        mqtt_login(&server, "c1", "dev-1", "dev-pass").await.1,
        Some(ReasonCode::Success)
    );
    ok(&ctl(&socket, &["users", "passwd", "dev-1", "new-pass"]).await);
    assert_eq!(
        mqtt_login(&server, "c2", "dev-1", "dev-pass").await.1,
        Some(ReasonCode::BadUserNameOrPassword)
    );
    assert_eq!(
        mqtt_login(&server, "c3", "dev-1", "new-pass").await.1,
        Some(ReasonCode::Success)
    );

    // Export, delete the user, import the file by its path: the user is back.
    let path = ok(&ctl(&socket, &["data", "export"]).await);
    let path = PathBuf::from(path.trim_end());
    assert!(path.starts_with(data_dir.join("backup")), "{}", path.display());
    assert!(path.is_file());
    let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    assert!(ok(&ctl(&socket, &["data", "list"]).await).starts_with(&name));
    assert_eq!(
        ok(&ctl(&socket, &["users", "del", "dev-1"]).await),
        "user dev-1 deleted\n"
    );
    assert_eq!(ok(&ctl(&socket, &["users", "list"]).await), "");
    let imported = ok(&ctl(&socket, &["data", "import", &path.display().to_string()]).await);
    assert_eq!(imported, format!("data imported from {name}\n"));
    assert_eq!(
        mqtt_login(&server, "c4", "dev-1", "new-pass").await.1,
        Some(ReasonCode::Success)
    );

    // By name, and from a copy elsewhere (uploaded under its own name).
    ok(&ctl(&socket, &["users", "del", "dev-1"]).await);
    ok(&ctl(&socket, &["data", "import", &name]).await);
    assert_eq!(ok(&ctl(&socket, &["users", "list"]).await), "dev-1 superuser:true\n");
    let copy = data_dir.parent().expect("dir").join("site-copy.tar.gz");
    std::fs::copy(&path, &copy).expect("copy");
    ok(&ctl(&socket, &["data", "import", &copy.display().to_string()]).await);
    assert!(data_dir.join("backup").join("site-copy.tar.gz").is_file());
    let missing = failed(&ctl(&socket, &["data", "import", "nothing-here.tar.gz"]).await);
    assert!(missing.contains("NOT_FOUND"), "{missing}");
    let bad = failed(&ctl(&socket, &["data", "export", "--table", "nope"]).await);
    assert!(bad.contains("table_sets"), "{bad}");

    // Dashboard users.
    assert_eq!(
        ok(&ctl(&socket, &["admins", "add", "ops", "ops-password-1", "night shift"]).await),
        "dashboard user ops added\n"
    );
    let admins = ok(&ctl(&socket, &["admins", "list"]).await);
    assert!(admins.contains("ops description:night shift\n"), "{admins}");
    let short = failed(&ctl(&socket, &["admins", "passwd", "ops", "short"]).await);
    assert!(short.contains("at least 8"), "{short}");
    ok(&ctl(&socket, &["admins", "passwd", "ops", "ops-password-2"]).await);
    let api = addr(&server, "dashboard:http");
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
    assert_eq!(login("ops-password-2").await.status, 200);
    assert_eq!(
        ok(&ctl(&socket, &["admins", "del", "ops"]).await),
        "dashboard user ops deleted\n"
    );
    assert!(!ok(&ctl(&socket, &["admins", "list"]).await).contains("ops"));
    let gone = failed(&ctl(&socket, &["admins", "del", "ops"]).await);
    assert!(gone.contains("USER_NOT_FOUND"), "{gone}");
    server.shutdown().await;
}
