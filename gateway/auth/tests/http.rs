//! HTTP authentication and authorization against a real HTTP server on 127.0.0.1: what is sent,
//! how replies are read, failures, timeouts and connection reuse.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use portico_auth::chain::{AuthnBackend, AuthzSource};
use portico_auth::http::{HttpAuthn, HttpAuthz, HttpSettings, Method, OnError};
use portico_auth::template::{Template, Var};
use portico_auth::{AuthnVerdict, AuthzVerdict};
use portico_core::auth::{Action, ClientInfo, Refusal};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn form(&self) -> Vec<(String, String)> {
        pairs(std::str::from_utf8(&self.body).expect("text"))
    }
}

fn pairs(query: &str) -> Vec<(String, String)> {
    reqwest_url(query)
}

/// Decodes `a=b&c=d` with the URL crate reqwest re-exports (so the test does not decode with our
/// own code).
fn reqwest_url(query: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).expect("url");
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What the handler answers: status, body, and how long to wait first.
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

struct Server {
    addr: SocketAddr,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    /// Most requests being handled at once.
    peak: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn last(&self) -> Seen {
        self.seen.lock().last().cloned().expect("a request arrived")
    }
}

async fn serve(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Server {
    let handler: Handler = Arc::new(handler);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let connections = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = Server {
        addr,
        connections: connections.clone(),
        peak: peak.clone(),
        seen: seen.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let (handler, seen, busy, peak) = (handler.clone(), seen.clone(), busy.clone(), peak.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (handler, seen, busy, peak) = (handler.clone(), seen.clone(), busy.clone(), peak.clone());
                    async move {
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        let request = record(req).await;
                        seen.lock().push(request.clone());
                        let reply = handler(&request);
                        tokio::time::sleep(reply.delay).await;
                        busy.fetch_sub(1, Ordering::SeqCst);
                        let mut response = Response::new(Full::new(Bytes::from(reply.body)));
                        *response.status_mut() = hyper::StatusCode::from_u16(reply.status).expect("status");
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    server
}

async fn record(req: Request<Incoming>) -> Seen {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = pairs(req.uri().query().unwrap_or(""));
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req.into_body().collect().await.expect("body").to_bytes().to_vec();
    Seen {
        method,
        path,
        query,
        headers,
        body,
    }
}

fn client(user: &str) -> ClientInfo {
    ClientInfo::new(
        ByteString::from_static("dev-1"),
        Some(ByteString::from(user.to_owned())),
        "10.1.2.3:4567".parse().expect("address"),
        "mqtt",
    )
}

fn authn_settings(url: &str) -> HttpSettings {
    HttpSettings::authn(Template::parse(url, Var::AUTHN).expect("template"))
}

fn authz_settings(url: &str) -> HttpSettings {
    HttpSettings::authz(Template::parse(url, Var::AUTHZ).expect("template"))
}

async fn authn(backend: &HttpAuthn, user: &str, password: &[u8]) -> AuthnVerdict {
    backend.check(&client(user), Some(password)).resolve().await
}

/// Answers by the `username` of a JSON body: alice allow, root superuser, bob deny, else ignore.
fn by_user(seen: &Seen) -> Answer {
    match seen.json()["username"].as_str() {
        Some("alice") => answer(200, r#"{"result": "allow"}"#),
        Some("root") => answer(200, r#"{"result": "allow", "is_superuser": true}"#),
        Some("bob") => answer(200, r#"{"result": "deny"}"#),
        _ => answer(200, r#"{"result": "ignore"}"#),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_deny_ignore_and_superuser_from_a_json_post() {
    let server = serve(by_user).await;
    let backend = HttpAuthn::new(authn_settings(&server.url("/auth"))).expect("backend");
    assert_eq!(authn(&backend, "alice", b"pw").await, AuthnVerdict::allow(false));
    let seen = server.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/auth");
    assert_eq!(
        seen.json(),
        json!({"username": "alice", "password": "pw"}),
        "EMQX's default body"
    );
    assert_eq!(
        seen.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(authn(&backend, "root", b"pw").await, AuthnVerdict::allow(true));
    assert_eq!(
        authn(&backend, "bob", b"pw").await,
        AuthnVerdict::Deny(Refusal::NotAuthorized)
    );
    assert_eq!(authn(&backend, "carol", b"pw").await, AuthnVerdict::Ignore);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_and_malformed_bodies() {
    let server = serve(|seen| match seen.path.as_str() {
        "/204" => answer(204, ""),
        "/401" => answer(401, r#"{"result": "allow"}"#),
        "/403" => answer(403, ""),
        "/500" => answer(500, r#"{"result": "allow"}"#),
        "/503" => answer(503, ""),
        "/garbage" => answer(200, "{not json"),
        "/array" => answer(200, "[1, 2]"),
        "/empty" => answer(200, ""),
        _ => answer(404, ""),
    })
    .await;
    let cases = [
        ("/204", AuthnVerdict::allow(false), AuthzVerdict::Allow),
        ("/401", AuthnVerdict::Deny(Refusal::NotAuthorized), AuthzVerdict::Deny),
        ("/403", AuthnVerdict::Deny(Refusal::NotAuthorized), AuthzVerdict::Deny),
        ("/500", AuthnVerdict::Ignore, AuthzVerdict::Ignore),
        ("/503", AuthnVerdict::Ignore, AuthzVerdict::Ignore),
        ("/garbage", AuthnVerdict::Ignore, AuthzVerdict::Ignore),
        ("/array", AuthnVerdict::Ignore, AuthzVerdict::Ignore),
        ("/empty", AuthnVerdict::Ignore, AuthzVerdict::Ignore),
    ];
    for (path, authn_expected, authz_expected) in cases {
        for on_error in [OnError::Ignore, OnError::Deny] {
            // on_error is for failures only: a reply, however bad, is never a failure.
            let mut settings = authn_settings(&server.url(path));
            settings.on_error = on_error;
            let backend = HttpAuthn::new(settings).expect("backend");
            assert_eq!(authn(&backend, "alice", b"pw").await, authn_expected, "authn {path}");
            let mut settings = authz_settings(&server.url(path));
            settings.on_error = on_error;
            let source = HttpAuthz::new(settings).expect("source");
            assert_eq!(
                source.check(&client("alice"), Action::Publish, "t").resolve().await,
                authz_expected,
                "authz {path}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_puts_the_fields_in_a_percent_encoded_query() {
    let server = serve(|_| answer(204, "")).await;
    let mut settings = authn_settings(&server.url("/auth/${clientid}?fixed=1&u=${username}"));
    settings.method = Method::Get;
    settings.headers = portico_auth::http::default_headers(Method::Get);
    let backend = HttpAuthn::new(settings).expect("backend");
    let user = "a&b c=d/é?#";
    assert_eq!(authn(&backend, user, b"p+w&x=y").await, AuthnVerdict::allow(false));
    let seen = server.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/auth/dev-1");
    assert!(seen.body.is_empty());
    assert!(!seen.headers.contains_key("content-type"));
    let expected: Vec<(String, String)> = [("fixed", "1"), ("u", user), ("username", user), ("password", "p+w&x=y")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(
        seen.query, expected,
        "every value arrives whole, nothing split on & = or #"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_posts_and_custom_headers() {
    let server = serve(|seen| {
        if seen.headers.get("x-api-key").map(String::as_str) == Some("k3y") {
            answer(200, r#"{"result": "allow"}"#)
        } else {
            answer(401, "")
        }
    })
    .await;
    let mut settings = authn_settings(&server.url("/auth"));
    settings.headers = vec![
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("x-api-key".to_owned(), "k3y".to_owned()),
    ];
    settings.body = vec![
        (
            "user".to_owned(),
            Template::parse("${username}", Var::AUTHN).expect("t"),
        ),
        (
            "pass".to_owned(),
            Template::parse("${password}", Var::AUTHN).expect("t"),
        ),
        (
            "from".to_owned(),
            Template::parse("${peerhost}:${peerport}/${proto_name}", Var::AUTHN).expect("t"),
        ),
    ];
    let backend = HttpAuthn::new(settings.clone()).expect("backend");
    assert_eq!(authn(&backend, "x y&z", b"a=b").await, AuthnVerdict::allow(false));
    let seen = server.last();
    assert_eq!(
        seen.headers.get("content-type").map(String::as_str),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen.form(),
        vec![
            ("user".to_owned(), "x y&z".to_owned()),
            ("pass".to_owned(), "a=b".to_owned()),
            ("from".to_owned(), "10.1.2.3:4567/MQTT".to_owned()),
        ]
    );
    settings.headers.retain(|(k, _)| k != "x-api-key");
    let without_key = HttpAuthn::new(settings).expect("backend");
    assert_eq!(
        authn(&without_key, "x", b"y").await,
        AuthnVerdict::Deny(Refusal::NotAuthorized)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_sends_topic_and_action() {
    let server = serve(|seen| {
        let body = seen.json();
        match (body["action"].as_str(), body["topic"].as_str()) {
            (Some("publish"), Some("ok/pub")) => answer(200, r#"{"result": "allow"}"#),
            (Some("subscribe"), Some("ok/#")) => answer(204, ""),
            (_, Some("never")) => answer(200, r#"{"result": "deny"}"#),
            _ => answer(200, r#"{"result": "ignore"}"#),
        }
    })
    .await;
    let source = HttpAuthz::new(authz_settings(&server.url("/acl?t=${topic}"))).expect("source");
    let c = client("alice");
    assert_eq!(
        source.check(&c, Action::Publish, "ok/pub").resolve().await,
        AuthzVerdict::Allow
    );
    let seen = server.last();
    assert_eq!(
        seen.json(),
        json!({"username": "alice", "clientid": "dev-1", "topic": "ok/pub", "action": "publish"})
    );
    assert_eq!(seen.query, vec![("t".to_owned(), "ok/pub".to_owned())]);
    assert_eq!(
        source.check(&c, Action::Subscribe, "ok/#").resolve().await,
        AuthzVerdict::Allow
    );
    assert_eq!(server.last().query, vec![("t".to_owned(), "ok/#".to_owned())]);
    assert_eq!(
        source.check(&c, Action::Publish, "ok/#").resolve().await,
        AuthzVerdict::Ignore
    );
    assert_eq!(
        source.check(&c, Action::Subscribe, "never").resolve().await,
        AuthzVerdict::Deny
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_gets_on_error_within_the_timeout() {
    let server = serve(|_| Answer {
        delay: Duration::from_secs(3),
        ..answer(200, r#"{"result": "allow"}"#)
    })
    .await;
    for (on_error, authn_expected, authz_expected) in [
        (OnError::Ignore, AuthnVerdict::Ignore, AuthzVerdict::Ignore),
        (
            OnError::Deny,
            AuthnVerdict::Deny(Refusal::Unavailable),
            AuthzVerdict::Deny,
        ),
    ] {
        let mut settings = authn_settings(&server.url("/slow"));
        settings.request_timeout = Duration::from_millis(300);
        settings.on_error = on_error;
        let backend = HttpAuthn::new(settings).expect("backend");
        let started = Instant::now();
        assert_eq!(authn(&backend, "alice", b"pw").await, authn_expected);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
            "took {took:?}"
        );
        let mut settings = authz_settings(&server.url("/slow"));
        settings.request_timeout = Duration::from_millis(300);
        settings.on_error = on_error;
        let source = HttpAuthz::new(settings).expect("source");
        let started = Instant::now();
        assert_eq!(
            source.check(&client("a"), Action::Publish, "t").resolve().await,
            authz_expected
        );
        assert!(started.elapsed() < Duration::from_millis(1500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_gets_on_error_at_once() {
    // A port nobody listens on: bind, note, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address");
    for (on_error, expected) in [
        (OnError::Ignore, AuthnVerdict::Ignore),
        (OnError::Deny, AuthnVerdict::Deny(Refusal::Unavailable)),
    ] {
        let mut settings = authn_settings(&format!("http://{addr}/auth"));
        settings.on_error = on_error;
        let backend = HttpAuthn::new(settings).expect("backend");
        let started = Instant::now();
        assert_eq!(authn(&backend, "alice", b"pw").await, expected);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused, not timed out: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tls_handshake_gets_on_error() {
    // https:// to a plain HTTP server: the handshake fails (this also proves the client has a
    // TLS crypto provider, which reqwest would otherwise panic without).
    let server = serve(by_user).await;
    let mut settings = authn_settings(&format!("https://{}/auth", server.addr));
    settings.on_error = OnError::Deny;
    let backend = HttpAuthn::new(settings).expect("backend");
    let started = Instant::now();
    assert_eq!(
        authn(&backend, "alice", b"pw").await,
        AuthnVerdict::Deny(Refusal::Unavailable)
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(server.seen.lock().is_empty(), "no request got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused() {
    let server = serve(by_user).await;
    let backend = HttpAuthn::new(authn_settings(&server.url("/auth"))).expect("backend");
    for _ in 0..50 {
        assert_eq!(authn(&backend, "alice", b"pw").await, AuthnVerdict::allow(false));
    }
    assert_eq!(server.seen.lock().len(), 50);
    let connections = server.connections.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&connections),
        "{connections} TCP connections for 50 sequential checks (pool_size 8)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_the_wire_are_bounded_and_the_rest_queue() {
    let server = serve(|_| Answer {
        delay: Duration::from_millis(100),
        ..answer(204, "")
    })
    .await;
    let mut settings = authn_settings(&server.url("/auth"));
    settings.max_inflight = 3;
    let backend = Arc::new(HttpAuthn::new(settings).expect("backend"));
    let checks: Vec<_> = (0..12)
        .map(|_| {
            let future = backend.check(&client("alice"), Some(b"pw")).resolve();
            tokio::spawn(future)
        })
        .collect();
    for check in checks {
        assert_eq!(check.await.expect("task"), AuthnVerdict::allow(false));
    }
    assert_eq!(server.seen.lock().len(), 12, "all answered");
    let peak = server.peak.load(Ordering::SeqCst);
    assert!(peak <= 3, "{peak} requests at once with max_inflight = 3");
    assert!(server.connections.load(Ordering::SeqCst) <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_counts_in_the_timeout() {
    let server = serve(|_| Answer {
        delay: Duration::from_millis(400),
        ..answer(204, "")
    })
    .await;
    let mut settings = authn_settings(&server.url("/auth"));
    settings.max_inflight = 1;
    settings.request_timeout = Duration::from_millis(600);
    let backend = Arc::new(HttpAuthn::new(settings).expect("backend"));
    let started = Instant::now();
    let checks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(backend.check(&client("alice"), Some(b"pw")).resolve()))
        .collect();
    let mut verdicts = Vec::new();
    for check in checks {
        verdicts.push(check.await.expect("task"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert!(verdicts.contains(&AuthnVerdict::allow(false)), "the first got through");
    assert!(
        verdicts.contains(&AuthnVerdict::Ignore),
        "those queued past the deadline gave up"
    );
}
