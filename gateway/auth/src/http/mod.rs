//! HTTP authentication (EMQX `mechanism = "password_based", backend = "http"`) and the HTTP
//! authorization source (`type = "http"`): every check is a request to a web service, whose
//! answer decides.
//!
//! Request: `method` POST (default) or GET to `url`, a template whose placeholder values are
//! percent-encoded. The `body` fields (key → template) go, for POST, as JSON, or as a form when
//! the `content-type` header says `application/x-www-form-urlencoded`; for GET they are added to
//! the query string. Header values are sent as written.
//!
//! Answer:
//!
//! | reply | authentication | authorization |
//! |---|---|---|
//! | 200, JSON `{"result": "allow"}` | allow (`"is_superuser"`: true, `"true"` or 1 → superuser) | allow |
//! | 200, `"result": "deny"` | deny (CONNACK 0x87 / 5) | deny |
//! | 200, `"result": "ignore"`, no `result` or an unknown one | ignore | ignore |
//! | 204 | allow (not a superuser) | allow |
//! | 4xx | deny | deny |
//! | 5xx, a body that is not a JSON object, other statuses | ignore | ignore |
//! | no answer within `request_timeout`, connection refused, TLS error | `on_error` | `on_error` |
//!
//! `on_error = "ignore"` (the default, as EMQX) lets the chain move on; `"deny"` refuses:
//! CONNACK 0x88 (server unavailable) for authentication, a denial for authorization.
//!
//! Differences from EMQX 5 (`emqx_auth_http`):
//! - EMQX 5 treats every status other than 200 and 204 as ignore; here a 4xx denies, as the
//!   requirement (and EMQX 4.x, where 4xx meant failure) says. A web service that wants the
//!   chain to move on answers 200 with `"result": "ignore"`, which both read the same.
//! - EMQX parses a 200 body as JSON or as a form, following the reply's `content-type`; here the
//!   body is always read as JSON (the form reply is undocumented in EMQX).
//! - The `acl` and `client_attrs` fields of EMQX 5.7+'s authentication reply are not read.
//! - `on_error` is Portico's: EMQX always ignores a failed request.
//! - Redirects are not followed (the request may carry a password); EMQX does not follow them
//!   either. No `ssl` options yet: `https://` URLs are verified against the system's roots.
//! - `max_inflight` is Portico's: EMQX pipelines requests over `pool_size` connections; here a
//!   backend has at most `max_inflight` requests on the wire (default: `pool_size`, so at most
//!   `pool_size` sockets, all reused) and queues the rest, so a CONNECT flood cannot open
//!   unbounded sockets. The time spent queued counts in `request_timeout`. More in flight than
//!   `pool_size` opens connections that are closed after one request: slower on a fast service
//!   (docs/benchmarks.md, "Authentication cost"), worth it only for a slow, distant one.

mod client;
mod request;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portico_core::auth::{Action, ClientInfo, Refusal};
use serde_json::Value;

use crate::chain::{AuthnBackend, AuthzSource, Check};
use crate::template::{Context, Template, Var};
use crate::{AuthnVerdict, AuthzVerdict};

pub use request::{check_header, check_url};

use client::{Client, Reply};

/// `method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `post` (EMQX's default): the body fields as JSON or a form.
    Post,
    /// `get`: the body fields in the query string.
    Get,
}

/// `on_error`: what a request that gets no answer (timeout, refused connection, TLS failure)
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Let the next backend decide (EMQX's behaviour).
    #[default]
    Ignore,
    /// Refuse: CONNACK 0x88 for authentication, a denial for authorization.
    Deny,
}

/// One HTTP backend's settings, as configured (templates already parsed).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// GET or POST.
    pub method: Method,
    /// Where to ask; placeholder values are percent-encoded into it.
    pub url: Template,
    /// Request headers (lower-case names), sent as written.
    pub headers: Vec<(String, String)>,
    /// Body fields (GET: query parameters).
    pub body: Vec<(String, Template)>,
    /// The longest a check may take, queueing included.
    pub request_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_size: usize,
    /// Requests on the wire at once; more wait in a queue.
    pub max_inflight: usize,
    /// What a failed request means.
    pub on_error: OnError,
}

/// Header values may hold credentials (`authorization`): names only.
impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("method", &self.method)
            .field("url", &self.url.to_string())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("body", &self.body)
            .field("request_timeout", &self.request_timeout)
            .field("pool_size", &self.pool_size)
            .field("max_inflight", &self.max_inflight)
            .field("on_error", &self.on_error)
            .finish()
    }
}

/// EMQX's default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// EMQX's default pool size.
pub const DEFAULT_POOL_SIZE: usize = 8;

impl HttpSettings {
    /// EMQX's defaults for `url`: POST, JSON, 5 s; `body` as given.
    fn new(url: Template, body: Vec<(String, Template)>) -> HttpSettings {
        HttpSettings {
            method: Method::Post,
            url,
            headers: default_headers(Method::Post),
            body,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            max_inflight: DEFAULT_POOL_SIZE,
            on_error: OnError::Ignore,
        }
    }

    /// Authentication defaults: body `{username = "${username}", password = "${password}"}`.
    pub fn authn(url: Template) -> HttpSettings {
        HttpSettings::new(
            url,
            default_body(&[("username", Var::Username), ("password", Var::Password)]),
        )
    }

    /// Authorization defaults: body with `${username}`, `${clientid}`, `${topic}`, `${action}`.
    pub fn authz(url: Template) -> HttpSettings {
        HttpSettings::new(
            url,
            default_body(&[
                ("username", Var::Username),
                ("clientid", Var::ClientId),
                ("topic", Var::Topic),
                ("action", Var::Action),
            ]),
        )
    }
}

fn default_body(fields: &[(&str, Var)]) -> Vec<(String, Template)> {
    fields
        .iter()
        .map(|(key, var)| ((*key).to_owned(), Template::from_var(*var)))
        .collect()
}

/// EMQX's default headers: JSON for POST, and keep-alive for both.
pub fn default_headers(method: Method) -> Vec<(String, String)> {
    let mut headers = vec![
        ("accept".to_owned(), "application/json".to_owned()),
        ("cache-control".to_owned(), "no-cache".to_owned()),
        ("connection".to_owned(), "keep-alive".to_owned()),
        ("keep-alive".to_owned(), "timeout=30, max=1000".to_owned()),
    ];
    if method == Method::Post {
        headers.insert(0, ("content-type".to_owned(), "application/json".to_owned()));
    }
    headers
}

/// An HTTP authenticator.
pub struct HttpAuthn {
    client: Arc<Client>,
}

impl HttpAuthn {
    /// A backend for `settings` (its templates must only use [`Var::AUTHN`]). Fails when the
    /// HTTP client cannot be built.
    pub fn new(settings: HttpSettings) -> Result<HttpAuthn, String> {
        Ok(HttpAuthn {
            client: Arc::new(Client::new(settings, "authentication")?),
        })
    }
}

impl fmt::Debug for HttpAuthn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAuthn").field("url", &self.client.url()).finish()
    }
}

impl AuthnBackend for HttpAuthn {
    fn check(&self, client: &ClientInfo, password: Option<&[u8]>) -> Check<AuthnVerdict> {
        let on_error = match self.client.on_error() {
            OnError::Ignore => AuthnVerdict::Ignore,
            OnError::Deny => AuthnVerdict::Deny(Refusal::Unavailable),
        };
        let request = match self.client.request(&Context::authn(client, password)) {
            Ok(request) => request,
            Err(()) => return Check::Now(on_error),
        };
        let http = self.client.clone();
        Check::Later(Box::pin(async move {
            match http.send(request).await {
                Some(reply) => authn_verdict(reply),
                None => on_error,
            }
        }))
    }
}

fn authn_verdict(reply: Reply) -> AuthnVerdict {
    match reply {
        Reply::NoContent => AuthnVerdict::allow(false),
        Reply::Client => AuthnVerdict::Deny(Refusal::NotAuthorized),
        Reply::Ignore => AuthnVerdict::Ignore,
        Reply::Json(body) => match result(&body) {
            Some(AuthzVerdict::Allow) => AuthnVerdict::allow(is_superuser(body.get("is_superuser"))),
            Some(AuthzVerdict::Deny) => AuthnVerdict::Deny(Refusal::NotAuthorized),
            Some(AuthzVerdict::Ignore) | None => AuthnVerdict::Ignore,
        },
    }
}

/// An HTTP authorization source.
pub struct HttpAuthz {
    client: Arc<Client>,
}

impl HttpAuthz {
    /// A source for `settings` (its templates must only use [`Var::AUTHZ`]).
    pub fn new(settings: HttpSettings) -> Result<HttpAuthz, String> {
        Ok(HttpAuthz {
            client: Arc::new(Client::new(settings, "authorization")?),
        })
    }
}

impl fmt::Debug for HttpAuthz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAuthz").field("url", &self.client.url()).finish()
    }
}

impl AuthzSource for HttpAuthz {
    fn check(&self, client: &ClientInfo, action: Action, topic: &str) -> Check<AuthzVerdict> {
        let on_error = match self.client.on_error() {
            OnError::Ignore => AuthzVerdict::Ignore,
            OnError::Deny => AuthzVerdict::Deny,
        };
        let request = match self.client.request(&Context::authz(client, action, topic)) {
            Ok(request) => request,
            Err(()) => return Check::Now(on_error),
        };
        let http = self.client.clone();
        Check::Later(Box::pin(async move {
            match http.send(request).await {
                Some(Reply::NoContent) => AuthzVerdict::Allow,
                Some(Reply::Client) => AuthzVerdict::Deny,
                Some(Reply::Ignore) => AuthzVerdict::Ignore,
                Some(Reply::Json(body)) => result(&body).unwrap_or(AuthzVerdict::Ignore),
                None => on_error,
            }
        }))
    }
}

/// The `result` field; `None` when absent or unknown (both ignore, as in EMQX).
fn result(body: &Value) -> Option<AuthzVerdict> {
    match body.get("result")?.as_str()? {
        "allow" => Some(AuthzVerdict::Allow),
        "deny" => Some(AuthzVerdict::Deny),
        "ignore" => Some(AuthzVerdict::Ignore),
        _ => None,
    }
}

/// EMQX accepts a boolean, `"true"`/`"false"` or a number for `is_superuser`.
fn is_superuser(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_map_to_verdicts() {
        assert_eq!(authn_verdict(Reply::NoContent), AuthnVerdict::allow(false));
        assert_eq!(authn_verdict(Reply::Client), AuthnVerdict::Deny(Refusal::NotAuthorized));
        assert_eq!(authn_verdict(Reply::Ignore), AuthnVerdict::Ignore);
        for (body, verdict) in [
            (json!({"result": "allow"}), AuthnVerdict::allow(false)),
            (
                json!({"result": "allow", "is_superuser": true}),
                AuthnVerdict::allow(true),
            ),
            (
                json!({"result": "allow", "is_superuser": "true"}),
                AuthnVerdict::allow(true),
            ),
            (json!({"result": "allow", "is_superuser": 1}), AuthnVerdict::allow(true)),
            (
                json!({"result": "allow", "is_superuser": 0}),
                AuthnVerdict::allow(false),
            ),
            (json!({"result": "deny"}), AuthnVerdict::Deny(Refusal::NotAuthorized)),
            (json!({"result": "ignore"}), AuthnVerdict::Ignore),
            (json!({"result": "maybe"}), AuthnVerdict::Ignore),
            (json!({}), AuthnVerdict::Ignore),
        ] {
            assert_eq!(authn_verdict(Reply::Json(body.clone())), verdict, "{body}");
        }
    }

    #[test]
    fn debug_hides_header_values() {
        let mut settings = HttpSettings::authn(Template::parse("http://a/", Var::AUTHN).expect("valid"));
        settings
            .headers
            .push(("authorization".to_owned(), "Bearer s3cret".to_owned()));
        let shown = format!("{settings:?}");
        assert!(shown.contains("authorization") && !shown.contains("s3cret"), "{shown}");
    }
}
