//! JWT authentication with keys from a JWKS endpoint served by a real HTTP server in the test:
//! kid selection, rotation on refresh, the early refresh on an unknown kid, the endpoint going
//! down, and the `acl` claim in both formats with expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytestring::ByteString;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use parking_lot::Mutex;
use portico_auth::AuthnVerdict;
use portico_auth::chain::Check;
use portico_auth::jwt::{Jwks, JwksSettings, JwtAuth, TokenFrom};
use portico_core::auth::{Action, ClientInfo, Refusal};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EC_A: &str = include_str!("fixtures/jwks-ec-a.pem");
const EC_B: &str = include_str!("fixtures/jwks-ec-b.pem");
const RSA: &str = include_str!("fixtures/jwks-rsa.pem");

/// A minimal HTTP/1.1 server answering every request with the current body (500 when `None`).
struct Server {
    url: String,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

async fn serve() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("address"));
    let body: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (body.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (b, h) = (b.clone(), h.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let current = b.lock().clone();
                let response = match current {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_owned(),
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Server { url, body, hits }
}

struct Signer {
    key: EncodingKey,
    alg: Algorithm,
}

fn ec(pem: &str) -> Signer {
    Signer {
        key: EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key"),
        alg: Algorithm::ES256,
    }
}

fn rsa() -> Signer {
    Signer {
        key: EncodingKey::from_rsa_pem(RSA.as_bytes()).expect("RSA key"),
        alg: Algorithm::RS256,
    }
}

impl Signer {
    fn jwk(&self, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("JWK");
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }

    fn token(&self, kid: Option<&str>, claims: Value) -> Vec<u8> {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, &claims, &self.key).expect("signed").into_bytes()
    }
}

fn set(keys: Vec<Jwk>) -> String {
    serde_json::to_string(&JwkSet { keys }).expect("JSON")
}

fn client() -> ClientInfo {
    ClientInfo::new(
        ByteString::from_static("dev-1"),
        Some(ByteString::from_static("alice")),
        "127.0.0.1:1".parse().expect("address"),
        "mqtt",
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn jwks(server: &Server, early_refresh_gap: Duration) -> Arc<Jwks> {
    Jwks::new(JwksSettings {
        early_refresh_gap,
        ..JwksSettings::new(server.url.clone())
    })
    .expect("settings")
}

async fn resolve(check: Check<AuthnVerdict>) -> AuthnVerdict {
    tokio::time::timeout(Duration::from_secs(10), check.resolve())
        .await
        .expect("answered in time")
}

fn is_allow(verdict: &AuthnVerdict) -> bool {
    matches!(verdict, AuthnVerdict::Allow { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_chosen_by_kid_and_tried_all_without_one() {
    let server = serve().await;
    let (a, b, r) = (ec(EC_A), ec(EC_B), rsa());
    *server.body.lock() = Some(set(vec![a.jwk("a"), r.jwk("r")]));
    let keys = jwks(&server, Duration::from_secs(5));
    let auth = JwtAuth::jwks(keys.clone(), TokenFrom::Password, Vec::new());
    let c = client();
    assert_eq!(
        auth.check(&c, Some(&a.token(Some("a"), json!({})))),
        AuthnVerdict::Ignore,
        "no keys yet: ignored"
    );
    keys.refresh().await.expect("fetched");
    assert_eq!(keys.len(), 2);
    assert!(is_allow(&auth.check(&c, Some(&a.token(Some("a"), json!({}))))));
    assert!(is_allow(
        &auth.check(&c, Some(&r.token(Some("r"), json!({"exp": now() + 60}))))
    ));
    assert!(
        is_allow(&auth.check(&c, Some(&a.token(None, json!({}))))),
        "no kid: every key is tried"
    );
    assert_eq!(
        auth.check(&c, Some(&b.token(Some("a"), json!({})))),
        AuthnVerdict::Deny(Refusal::BadCredentials),
        "signed by another key under a known kid"
    );
    assert_eq!(
        auth.check(&c, Some(&a.token(Some("r"), json!({})))),
        AuthnVerdict::Deny(Refusal::BadCredentials),
        "the kid names an RSA key, the token is ECDSA"
    );
    assert_eq!(
        auth.check(&c, Some(&a.token(Some("a"), json!({"exp": now() - 5})))),
        AuthnVerdict::Deny(Refusal::BadCredentials),
        "expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_early_refresh_and_an_endpoint_that_goes_down() {
    let server = serve().await;
    let (a, b) = (ec(EC_A), ec(EC_B));
    *server.body.lock() = Some(set(vec![a.jwk("a")]));
    let keys = jwks(&server, Duration::from_millis(300));
    keys.start(&tokio::runtime::Handle::current());
    let auth = Arc::new(JwtAuth::jwks(keys.clone(), TokenFrom::Password, Vec::new()));
    let c = client();
    for _ in 0..200 {
        if !keys.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(keys.len(), 1, "fetched at start");
    let hits = server.hits.load(Ordering::SeqCst);
    let check = auth.check_deferred(&c, Some(&b.token(Some("b"), json!({}))));
    assert!(
        matches!(check, Check::Now(AuthnVerdict::Deny(Refusal::BadCredentials))),
        "just fetched: no early refresh yet"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;

    // The issuer rotates to key b: a token with the new kid triggers an early refresh.
    *server.body.lock() = Some(set(vec![b.jwk("b")]));
    let token_b = b.token(Some("b"), json!({}));
    let check = auth.check_deferred(&c, Some(&token_b));
    assert!(matches!(check, Check::Later(_)), "unknown kid: refresh first");
    assert!(is_allow(&resolve(check).await));
    assert_eq!(server.hits.load(Ordering::SeqCst), hits + 1);
    assert_eq!(
        auth.check(&c, Some(&a.token(Some("a"), json!({})))),
        AuthnVerdict::Deny(Refusal::BadCredentials),
        "the old key is gone"
    );
    // Another unknown kid right after: no second fetch, refused now.
    let check = auth.check_deferred(&c, Some(&a.token(Some("zzz"), json!({}))));
    assert!(matches!(check, Check::Now(AuthnVerdict::Deny(Refusal::BadCredentials))));
    assert_eq!(server.hits.load(Ordering::SeqCst), hits + 1, "rate-limited");

    // The endpoint fails: the last good keys stay.
    *server.body.lock() = None;
    assert!(keys.refresh().await.is_err());
    assert!(is_allow(&auth.check(&c, Some(&token_b))));
    // It answers garbage: same.
    *server.body.lock() = Some("not json".to_owned());
    assert!(keys.refresh().await.is_err());
    assert!(is_allow(&auth.check(&c, Some(&token_b))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_claims_in_both_formats_and_expiry() {
    let server = serve().await;
    let a = ec(EC_A);
    *server.body.lock() = Some(set(vec![a.jwk("a")]));
    let keys = jwks(&server, Duration::from_secs(5));
    keys.refresh().await.expect("fetched");
    let auth = JwtAuth::jwks(keys, TokenFrom::Password, Vec::new()).with_acl_claim("rights");
    let c = client();
    let acl_of = |claims: Value| match auth.check(&c, Some(&a.token(Some("a"), claims))) {
        AuthnVerdict::Allow { acl: Some(acl), .. } => acl,
        other => panic!("expected rules, got {other:?}"),
    };

    let map = acl_of(json!({"rights": {"pub": ["up/${clientid}"], "sub": ["down/#"]}, "exp": now() + 60}));
    assert_eq!(map.check(&c, Action::Publish, "up/dev-1"), Some(true));
    assert_eq!(
        map.check(&c, Action::Publish, "up/dev-2"),
        Some(false),
        "not listed: denied"
    );
    assert_eq!(map.check(&c, Action::Subscribe, "down/x"), Some(true));

    let list = acl_of(json!({"rights": [
        {"permission": "deny", "action": "publish", "topic": "t/secret"},
        {"permission": "allow", "action": "all", "topic": "t/#"}
    ]}));
    assert_eq!(list.check(&c, Action::Publish, "t/secret"), Some(false));
    assert_eq!(list.check(&c, Action::Subscribe, "t/x"), Some(true));
    assert_eq!(
        list.check(&c, Action::Publish, "other"),
        None,
        "not listed: the sources decide"
    );

    // A token valid now that expires in a second: its rules deny everything once it has.
    let short = acl_of(json!({"rights": [{"permission": "allow", "action": "all", "topic": "#"}], "exp": now() + 1}));
    assert_eq!(short.check(&c, Action::Publish, "x"), Some(true));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(short.check(&c, Action::Publish, "x"), Some(false), "expired: denied");

    assert_eq!(
        auth.check(
            &c,
            Some(&a.token(Some("a"), json!({"rights": [{"permission": "allow"}]})))
        ),
        AuthnVerdict::Deny(Refusal::BadCredentials),
        "a malformed acl claim refuses the token"
    );
    assert!(matches!(
        auth.check(
            &c,
            Some(&a.token(Some("a"), json!({"acl": "ignored: another claim name"})))
        ),
        AuthnVerdict::Allow { acl: None, .. }
    ));
}
