//! A minimal HTTP/1.1 client for the API tests: one request per connection
//! (`Connection: close`), status, headers and body (plain or chunked).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::WAIT;

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, auth: Auth<'_>, body: Option<&[u8]>) -> Response {
    request_typed(addr, method, path, auth, body.map(|b| ("application/json", b))).await
}

/// One request with a body of any content type (`content type`, bytes).
pub async fn request_typed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<(&str, &[u8])>,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the API");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    match auth {
        Auth::None => {}
        Auth::Bearer(token) => head.push_str(&format!("Authorization: Bearer {token}\r\n")),
        Auth::Basic(user, secret) => {
            use base64::Engine as _;
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            head.push_str(&format!("Authorization: Basic {credentials}\r\n"));
        }
    }
    if let Some((content_type, body)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write request");
    if let Some((_, body)) = body {
        // A refused oversized body may be cut short by the server: not an error here.
        let _ = stream.write_all(body).await;
    }
    let mut raw = Vec::new();
    let _ = timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("API answers in time");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        data = &data[end + 2..];
        out.extend_from_slice(&data[..size.min(data.len())]);
        data = &data[(size + 2).min(data.len())..];
    }
}

/// The admin password the API tests start their servers with.
pub const ADMIN_PASSWORD: &str = "test-password-1";

/// The environment of a test server with the MQTT listener and the HTTP API on loopback
/// (port 0), no WebSocket listener, and the first admin's password set to [`ADMIN_PASSWORD`].
/// The data directory is the caller's.
pub fn api_env() -> Vec<(String, String)> {
    [
        ("PORTICO_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0"),
        ("PORTICO_LISTENERS__WS__DEFAULT__ENABLE", "false"),
        ("PORTICO_DASHBOARD__LISTENERS__HTTP__BIND", "127.0.0.1:0"),
        ("PORTICO_DASHBOARD__DEFAULT_PASSWORD", ADMIN_PASSWORD),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One request with an optional JSON body.
pub async fn call(
    api: SocketAddr,
    method: &str,
    path: &str,
    auth: Auth<'_>,
    body: Option<serde_json::Value>,
) -> Response {
    let body = body.map(|b| serde_json::to_vec(&b).expect("JSON"));
    request(api, method, path, auth, body.as_deref()).await
}

/// Logs in as `admin` with [`ADMIN_PASSWORD`]; the bearer token.
pub async fn admin_token(api: SocketAddr) -> String {
    let body = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD});
    let answer = call(api, "POST", "/api/v5/login", Auth::None, Some(body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["token"].as_str().expect("token").to_owned()
}
