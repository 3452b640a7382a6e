//! One backend's HTTP client: a pooled keep-alive client built once, a bound on requests on the
//! wire, one deadline over queueing + request + reply, and warnings that cannot flood the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Request, StatusCode};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::request;
use super::{HttpSettings, Method, OnError};
use crate::template::{Context, Template};

/// The most of a reply body read: an auth service answers a few bytes of JSON; a larger body is
/// malformed, and reading it all would let the service make us buffer anything.
const MAX_BODY: usize = 64 * 1024;

/// How long pooled connections stay open unused (EMQX asks the server for 30 s keep-alive).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the service said, reduced to what the verdicts need.
#[derive(Debug)]
pub(super) enum Reply {
    /// 204.
    NoContent,
    /// 4xx.
    Client,
    /// 5xx, another status, or a 200 whose body is not a JSON object.
    Ignore,
    /// 200 with a JSON object.
    Json(Value),
}

/// Kinds of trouble, each warned about at most once per [`WARN_EVERY`].
#[derive(Debug, Clone, Copy)]
enum Trouble {
    Timeout,
    Connect,
    Request,
    ServerError,
    Malformed,
    Status,
}

const TROUBLES: usize = 6;
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Per-kind time of the last warning, so a dead service costs one log line per kind per 10 s,
/// not one per CONNECT.
struct Warnings {
    start: Instant,
    /// Milliseconds since `start` + 1 of the last warning; 0 = never.
    last: [AtomicU64; TROUBLES],
    /// Troubles not logged since the last warning of the kind.
    quiet: [AtomicU64; TROUBLES],
}

impl Warnings {
    fn new() -> Warnings {
        Warnings {
            start: Instant::now(),
            last: Default::default(),
            quiet: Default::default(),
        }
    }

    /// `Some(suppressed count)` when this trouble should be logged now.
    fn due(&self, kind: Trouble) -> Option<u64> {
        let i = kind as usize;
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last[i].load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every
            || self.last[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.quiet[i].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.quiet[i].swap(0, Ordering::Relaxed))
    }
}

pub(super) struct Client {
    http: reqwest::Client,
    method: Method,
    url: Template,
    headers: HeaderMap,
    body: Vec<(String, Template)>,
    /// POST as `application/x-www-form-urlencoded` rather than JSON.
    form: bool,
    permits: Arc<Semaphore>,
    timeout: Duration,
    on_error: OnError,
    warnings: Warnings,
    /// "authentication" or "authorization", for the log.
    what: &'static str,
}

impl Client {
    pub(super) fn new(settings: HttpSettings, what: &'static str) -> Result<Client, String> {
        // reqwest is built without a crypto provider of its own (aws-lc-rs needs a C build): it
        // takes the process default, which is ring, as for our listeners. Already installed is
        // fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.pool_size)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_timeout(settings.request_timeout)
            .timeout(settings.request_timeout)
            // The request may carry a password: never resend it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))?;
            let value = HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
            headers.append(name, value);
        }
        let mut form = false;
        if settings.method == Method::Post {
            match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
                Some(ct) => {
                    form = ct
                        .trim()
                        .to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                }
                None => {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
            }
        }
        Ok(Client {
            http,
            method: settings.method,
            url: settings.url,
            headers,
            body: settings.body,
            form,
            permits: Arc::new(Semaphore::new(settings.max_inflight.max(1))),
            timeout: settings.request_timeout,
            on_error: settings.on_error,
            warnings: Warnings::new(),
            what,
        })
    }

    /// The configured URL (placeholders shown, never values).
    pub(super) fn url(&self) -> String {
        self.url.to_string()
    }

    pub(super) fn on_error(&self) -> OnError {
        self.on_error
    }

    /// The request for `cx`; `Err` (logged) when the URL does not parse once filled in.
    pub(super) fn request(&self, cx: &Context<'_>) -> Result<Request, ()> {
        let (url, body) = match self.method {
            Method::Get => {
                let mut query = String::new();
                request::form(&self.body, cx, &mut query);
                (request::url(&self.url, cx, Some(&query)), None)
            }
            Method::Post => {
                let body = if self.form {
                    let mut text = String::new();
                    request::form(&self.body, cx, &mut text);
                    text.into_bytes()
                } else {
                    request::json(&self.body, cx)
                };
                (request::url(&self.url, cx, None), Some(body))
            }
        };
        let url = url.map_err(|error| self.warn(Trouble::Request, &error))?;
        let method = match self.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut request = Request::new(method, url);
        *request.headers_mut() = self.headers.clone();
        if let Some(body) = body {
            *request.body_mut() = Some(body.into());
        }
        Ok(request)
    }

    /// Sends `request` when fewer than `max_inflight` are on the wire; the reply, or `None` when
    /// there was none in time (warned about).
    pub(super) async fn send(&self, request: Request) -> Option<Reply> {
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(error)) => {
                let kind = if error.is_timeout() {
                    Trouble::Timeout
                } else if error.is_connect() {
                    Trouble::Connect
                } else {
                    Trouble::Request
                };
                // `without_url`: the URL may hold a user name; the template is logged instead.
                self.warn(kind, &causes(&error.without_url()));
                None
            }
            Err(_) => {
                self.warn(Trouble::Timeout, &"no answer within request_timeout");
                None
            }
        }
    }

    async fn exchange(&self, request: Request) -> Result<Reply, reqwest::Error> {
        // Never closed, so acquiring only waits; a queue that outlasts the deadline is cut by
        // the timeout around this.
        let _permit = self.permits.acquire().await;
        let mut response = self.http.execute(request).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(Reply::NoContent);
        }
        if status.is_client_error() {
            return Ok(Reply::Client);
        }
        if status != StatusCode::OK {
            let kind = if status.is_server_error() {
                Trouble::ServerError
            } else {
                Trouble::Status
            };
            self.warn(kind, &format!("status {status}"));
            return Ok(Reply::Ignore);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY {
                self.warn(Trouble::Malformed, &format!("reply body over {MAX_BODY} bytes"));
                return Ok(Reply::Ignore);
            }
            body.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value @ Value::Object(_)) => Ok(Reply::Json(value)),
            Ok(_) | Err(_) => {
                self.warn(Trouble::Malformed, &"the 200 reply is not a JSON object");
                Ok(Reply::Ignore)
            }
        }
    }

    fn warn(&self, kind: Trouble, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.warnings.due(kind) {
            tracing::warn!(
                backend = self.what,
                url = %self.url,
                trouble = ?kind,
                %error,
                suppressed,
                "HTTP {} request failed; on_error = {:?} applies for failures, ignore for bad replies",
                self.what,
                self.on_error,
            );
        }
    }
}

/// The error and its causes ("error sending request: connection refused"): reqwest's own
/// message alone does not say what went wrong.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_kind_per_period() {
        let w = Warnings::new();
        assert_eq!(w.due(Trouble::Timeout), Some(0));
        assert_eq!(w.due(Trouble::Timeout), None);
        assert_eq!(w.due(Trouble::Timeout), None);
        assert_eq!(w.due(Trouble::Connect), Some(0), "another kind has its own period");
        // A gate whose clock started a period ago, with a warning logged at its start.
        let later = Warnings {
            start: w.start - WARN_EVERY - Duration::from_millis(5),
            last: Default::default(),
            quiet: Default::default(),
        };
        later.last[Trouble::Timeout as usize].store(1, Ordering::Relaxed);
        later.quiet[Trouble::Timeout as usize].store(2, Ordering::Relaxed);
        assert_eq!(
            later.due(Trouble::Timeout),
            Some(2),
            "due again, with the count it kept quiet"
        );
    }
}
