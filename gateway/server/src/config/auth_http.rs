//! The keys of an HTTP authenticator (`authentication[] = { mechanism = "password_based",
//! backend = "http", ... }`) and an HTTP authorization source (`authorization.sources[] =
//! { type = "http", ... }`), in EMQX 5's shape, plus `max_inflight` and `on_error` (Portico's).
//!
//! Templates are parsed here, so an unknown placeholder, a URL that cannot work or a header
//! HTTP cannot carry is refused at start with the key that holds it.

use portico_auth::http::{
    DEFAULT_POOL_SIZE, DEFAULT_REQUEST_TIMEOUT, HttpSettings, Method, OnError, check_header, check_url, default_headers,
};
use portico_auth::template::{Template, Var};
use toml::Value;

use super::schema::{Ctx, Section, one_of};
use super::value;

/// The settings of an HTTP authenticator; `None` once a problem is reported.
pub(super) fn authn(s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<HttpSettings> {
    settings(s, ctx, Var::AUTHN, HttpSettings::authn)
}

/// The settings of an HTTP authorization source; `None` once a problem is reported.
pub(super) fn authz(s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<HttpSettings> {
    settings(s, ctx, Var::AUTHZ, HttpSettings::authz)
}

fn settings(
    s: &mut Section<'_>,
    ctx: &mut Ctx<'_>,
    vars: &'static [Var],
    defaults: fn(Template) -> HttpSettings,
) -> Option<HttpSettings> {
    let method = s.field(ctx, "method", Method::Post, |v| {
        one_of(v, &[(Method::Post, "post"), (Method::Get, "get")])
    });
    let url = s.required(ctx, "url", |v| {
        let template = Template::parse(&value::non_empty_string(v)?, vars).map_err(|e| e.to_string())?;
        check_url(&template)?;
        Ok(template)
    });
    let headers = s.read(ctx, "headers", headers).ok().flatten();
    let body = s.read(ctx, "body", |v| body(v, vars)).ok().flatten();
    let request_timeout = s.field(
        ctx,
        "request_timeout",
        DEFAULT_REQUEST_TIMEOUT,
        value::positive_duration,
    );
    let pool_size = s.field(ctx, "pool_size", DEFAULT_POOL_SIZE, |v| value::int_in(v, 1, 1024));
    // Unset: as many as pool_size, so every connection opened stays in the pool.
    let max_inflight = s.field(ctx, "max_inflight", None, |v| value::int_in(v, 1, 65_536).map(Some));
    let on_error = s.field(ctx, "on_error", OnError::Ignore, |v| {
        one_of(v, &[(OnError::Ignore, "ignore"), (OnError::Deny, "deny")])
    });
    let mut settings = defaults(url?);
    settings.method = method;
    // As in EMQX, configured headers replace the defaults (POST still gets a content-type).
    settings.headers = headers.unwrap_or_else(|| default_headers(method));
    if let Some(body) = body {
        settings.body = body;
    }
    settings.request_timeout = request_timeout;
    settings.pool_size = pool_size;
    settings.max_inflight = max_inflight.unwrap_or(pool_size);
    settings.on_error = on_error;
    Some(settings)
}

/// `headers = { "x-name" = "value", ... }`: names lower-cased, values as written.
fn headers(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Table(table) = v else {
        return Err("expected a table of header = \"value\"".to_owned());
    };
    table
        .iter()
        .map(|(name, value)| {
            let Value::String(text) = value else {
                return Err(format!("header {name:?}: expected a string"));
            };
            check_header(name, text).map_err(|why| format!("header {name:?}: {why}"))?;
            Ok((name.to_ascii_lowercase(), text.clone()))
        })
        .collect()
}

/// `body = { field = "template", ... }`.
fn body(v: &Value, vars: &[Var]) -> Result<Vec<(String, Template)>, String> {
    let Value::Table(table) = v else {
        return Err("expected a table of field = \"template\"".to_owned());
    };
    table
        .iter()
        .map(|(name, value)| {
            let Value::String(text) = value else {
                return Err(format!("field {name:?}: expected a string"));
            };
            let template = Template::parse(text, vars).map_err(|e| format!("field {name:?}: {e}"))?;
            Ok((name.clone(), template))
        })
        .collect()
}
