//! The HTTP API over HTTPS (`dashboard.listeners.https`): a login and a call over TLS with the
//! test CA, the plain listener off, a client that never finishes its handshake holding up no
//! one, and a missing certificate refused at start with the key named.

#[path = "../../transport/src/tests/pki.rs"]
mod pki;
mod support;

use std::sync::Arc;

use pki::Pki;
use portico::Server;
use portico::config::Config;
use rustls::pki_types::{CertificateDer, ServerName};
use support::{WAIT, addr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "test-password-1";

fn env(pki: &Pki) -> Vec<(String, String)> {
    [
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0".to_owned()),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE", "false".to_owned()),
        ("PORTICO_DASHBOARD__LISTENERS__HTTP__ENABLE", "false".to_owned()),
        ("PORTICO_DASHBOARD__LISTENERS__HTTPS__ENABLE", "true".to_owned()),
        ("PORTICO_DASHBOARD__LISTENERS__HTTPS__BIND", "127.0.0.1:0".to_owned()),
        (
            "PORTICO_DASHBOARD__LISTENERS__HTTPS__SSL_OPTIONS__CERTFILE",
            pki.server_cert.display().to_string(),
        ),
        (
            "PORTICO_DASHBOARD__LISTENERS__HTTPS__SSL_OPTIONS__KEYFILE",
            pki.server_key.display().to_string(),
        ),
        ("PORTICO_DASHBOARD__DEFAULT_PASSWORD", PASSWORD.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain([support::data_dir_env()])
    .collect()
}

/// One HTTP/1.1 request over TLS, verified against the test CA; the status and the body.
async fn https(pki: &Pki, at: std::net::SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der())).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(at).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let request = format!(
        "{head}\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut raw))
        .await
        .expect("answer in time");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn the_api_is_served_over_https() {
    let pki = Pki::new("e2e-api-https");
    let config = Config::load(None, env(&pki)).expect("valid test config");
    let server = Server::start(&config).await.expect("server starts");
    let names: Vec<String> = server.listeners().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"dashboard:https".to_owned()), "{names:?}");
    assert!(!names.contains(&"dashboard:http".to_owned()), "http is off: {names:?}");
    let at = addr(&server, "dashboard:https");

    // A client that connects and says nothing does not hold up the next one.
    let _silent = TcpStream::connect(at).await.expect("connect");
    let login = format!(r#"{{"username":"admin","password":"{PASSWORD}"}}"#);
    let (status, body) = https(&pki, at, "POST /api/v5/login HTTP/1.1", &login).await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let token = token["token"].as_str().expect("token").to_owned();
    let head = format!("GET /api/v5/nodes HTTP/1.1\r\nAuthorization: Bearer {token}");
    let (status, body) = https(&pki, at, &head, "").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = https(&pki, at, "GET /api/v5/nodes HTTP/1.1", "").await;
    assert_eq!(status, 401, "credentials are still required");
    server.shutdown().await;
}

#[tokio::test]
async fn https_without_a_certificate_is_refused_at_start() {
    let pki = Pki::new("e2e-api-https-bad");
    let mut env = env(&pki);
    env.retain(|(k, _)| !k.ends_with("__CERTFILE"));
    match Config::load(None, env.clone()) {
        Err(errors) => {
            let text = errors.to_string();
            assert!(text.contains("dashboard.listeners.https.ssl_options"), "{text}");
        }
        Ok(config) => {
            let error = Server::start(&config).await.expect_err("no certificate");
            assert!(
                error.to_string().contains("dashboard.listeners.https.ssl_options"),
                "{error}"
            );
        }
    }
}
