//! `dashboard.*`: the HTTP API listener and its first admin (EMQX 5 keys).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::auth::Secret;
use super::schema::{Ctx, Section};
use super::types::SslOptions;
use super::value;

/// `dashboard.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// `dashboard.listeners.http.enable`.
    pub http_enable: bool,
    /// `dashboard.listeners.http.bind`.
    pub http_bind: SocketAddr,
    /// `dashboard.listeners.https.enable` (off: it needs a certificate).
    pub https_enable: bool,
    /// `dashboard.listeners.https.bind`.
    pub https_bind: SocketAddr,
    /// `dashboard.listeners.https.ssl_options`: MQTT's `ssl_options` keys.
    pub https_ssl_options: SslOptions,
    /// `dashboard.default_username`: the admin created at the first start.
    pub default_username: String,
    /// `dashboard.default_password`: that admin's password; unset (the default) generates a
    /// one-time password printed to stderr. Never a fixed public default.
    pub default_password: Option<Secret>,
    /// `dashboard.token_expired_time`: lifetime of a login token.
    pub token_expired_time: Duration,
    /// `dashboard.unsuccessful_login_max_attempts`: failed logins that lock a user name (0: no lockout).
    pub unsuccessful_login_max_attempts: u32,
    /// `dashboard.unsuccessful_login_interval`: the window those failures count in.
    pub unsuccessful_login_interval: Duration,
    /// `dashboard.unsuccessful_login_lock_duration`: how long the name stays locked.
    pub unsuccessful_login_lock_duration: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            http_enable: true,
            http_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 18083),
            https_enable: false,
            https_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 18084),
            https_ssl_options: SslOptions::default(),
            default_username: "admin".to_owned(),
            default_password: None,
            token_expired_time: Duration::from_secs(60 * 60),
            unsuccessful_login_max_attempts: 5,
            unsuccessful_login_interval: Duration::from_secs(300),
            unsuccessful_login_lock_duration: Duration::from_secs(600),
        }
    }
}

/// Shortest `default_password` accepted: a short one would be guessed.
const MIN_PASSWORD_LEN: usize = 8;

/// `default_password`, reported without its value when it is refused: a config error must not
/// print a secret.
fn default_password(s: &mut Section<'_>, ctx: &mut Ctx<'_>) -> Option<Secret> {
    // Never fails, so that the generic error path (which shows the value) is not taken.
    let raw: Option<Option<String>> = s.field(ctx, "default_password", None, |v| {
        Ok(Some(v.as_str().map(str::to_owned)))
    });
    let key = s.key("default_password");
    match raw? {
        None => {
            ctx.invalid(&key, "<redacted>".to_owned(), "expected a string");
            None
        }
        // Empty means "not set", as an unset environment variable would.
        Some(password) if password.is_empty() => None,
        Some(password) if password.chars().count() < MIN_PASSWORD_LEN => {
            ctx.invalid(
                &key,
                "<redacted>".to_owned(),
                format!("must have at least {MIN_PASSWORD_LEN} characters"),
            );
            None
        }
        Some(password) => Some(Secret(password.into_bytes())),
    }
}

pub(super) fn dashboard(mut s: Section<'_>, ctx: &mut Ctx<'_>) -> DashboardConfig {
    let d = DashboardConfig::default();
    let mut listeners = s.section(ctx, "listeners");
    let mut http = listeners.section(ctx, "http");
    let http_enable = http.field(ctx, "enable", d.http_enable, value::boolean);
    let http_bind = http.field(ctx, "bind", d.http_bind, value::bind);
    http.finish(ctx);
    let mut https = listeners.section(ctx, "https");
    let https_enable = https.field(ctx, "enable", d.https_enable, value::boolean);
    let https_bind = https.field(ctx, "bind", d.https_bind, value::bind);
    let https_ssl_options = super::listeners::ssl_options(https.section(ctx, "ssl_options"), ctx, https_enable);
    https.finish(ctx);
    listeners.finish(ctx);
    let out = DashboardConfig {
        http_enable,
        http_bind,
        https_enable,
        https_bind,
        https_ssl_options,
        default_username: s.field(ctx, "default_username", d.default_username, value::non_empty_string),
        default_password: default_password(&mut s, ctx),
        token_expired_time: s.field(
            ctx,
            "token_expired_time",
            d.token_expired_time,
            value::positive_duration,
        ),
        unsuccessful_login_max_attempts: s.field(
            ctx,
            "unsuccessful_login_max_attempts",
            d.unsuccessful_login_max_attempts,
            |v| value::int_in(v, 0, 1000),
        ),
        unsuccessful_login_interval: s.field(
            ctx,
            "unsuccessful_login_interval",
            d.unsuccessful_login_interval,
            value::positive_duration,
        ),
        unsuccessful_login_lock_duration: s.field(
            ctx,
            "unsuccessful_login_lock_duration",
            d.unsuccessful_login_lock_duration,
            value::positive_duration,
        ),
    };
    s.finish(ctx);
    out
}
