//! `portico-bench auth-server`: a small, fast web service for the HTTP authentication and
//! authorization benchmark, so that the service is not what limits the broker's CONNECT rate.
//!
//! `POST /auth` with a JSON body: `{"result": "allow"}` when `password` is the configured one,
//! 401 otherwise. `POST /acl`: `{"result": "allow"}`, or `deny` for topics under `denied/`.
//! Counts requests per path and prints the counts on exit (Ctrl-C / SIGTERM).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// What the service accepts and how slowly it answers.
#[derive(Debug, Clone)]
pub struct AuthServerConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The password every user must send.
    pub password: String,
    /// Added before every answer (to model a remote service).
    pub delay: Duration,
}

#[derive(Default)]
struct Counts {
    auth: AtomicU64,
    acl: AtomicU64,
}

/// Serves until SIGINT/SIGTERM. Prints `listening on ADDR` on stdout once bound.
pub async fn run(config: AuthServerConfig) -> Result<()> {
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr().context("local address")?;
    say(&format!("listening on {addr}"))?;
    let counts = Arc::new(Counts::default());
    let config = Arc::new(config);
    let serve = {
        let counts = counts.clone();
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (counts, config) = (counts.clone(), config.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, counts.clone(), config.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    };
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        () = serve => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    say(&format!(
        "requests: auth {} acl {}",
        counts.auth.load(Ordering::Relaxed),
        counts.acl.load(Ordering::Relaxed)
    ))
}

/// One line on stdout, flushed: the runner reads the bound address from it.
fn say(line: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

async fn answer(
    req: Request<Incoming>,
    counts: Arc<Counts>,
    config: Arc<AuthServerConfig>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    if !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    let (status, reply): (u16, &'static str) = match path.as_str() {
        "/auth" => {
            counts.auth.fetch_add(1, Ordering::Relaxed);
            if field("password") == config.password {
                (200, r#"{"result":"allow"}"#)
            } else {
                (401, "")
            }
        }
        "/acl" => {
            counts.acl.fetch_add(1, Ordering::Relaxed);
            if field("topic").starts_with("denied/") {
                (200, r#"{"result":"deny"}"#)
            } else {
                (200, r#"{"result":"allow"}"#)
            }
        }
        _ => (404, ""),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(reply.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
