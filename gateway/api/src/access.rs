//! Who may call the API: dashboard users (name and password → bearer token) and API keys
//! (HTTP Basic with key and secret, see [`crate::keys`]).
//!
//! Dashboard users are a built-in user database of their own ([`USERS_SPACE`] in the durable
//! store), hashed with the built-in database's default (argon2id). Tokens are random, live in
//! memory only (a restart logs everyone out) and expire after `dashboard.token_expired_time`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use portico_auth::builtin::{BuiltinDb, UserIdType};
use portico_auth::password::HashAlgorithm;
use portico_core::journal::Journal;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, Strict, json_rejection};
use crate::{ApiSettings, StartError};

/// The durable store's key space of dashboard users.
pub(crate) const USERS_SPACE: &str = "dashboard.users";

/// Most live tokens: past it, the one closest to expiry is dropped, so that logins in a loop
/// cannot grow memory.
const MAX_TOKENS: usize = 4096;

/// Length of a generated first password, in characters (alphanumeric: ~119 bits).
const GENERATED_PASSWORD_LEN: usize = 20;

/// How long the first admin's record may take to reach the disk before the start goes on.
const BOOTSTRAP_FLUSH: Duration = Duration::from_secs(10);

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// A dashboard user, by name (logged in with a token).
    User(String),
    /// An API key, by its name.
    ApiKey(String),
    /// The operator on the local control socket (`portico ctl`): may do what an API key may.
    Local,
}

pub(crate) fn open_users(journal: Option<Arc<Journal>>) -> Result<BuiltinDb, StartError> {
    BuiltinDb::open_in(USERS_SPACE, journal, HashAlgorithm::default(), UserIdType::Username)
        .map_err(|e| StartError::Users(e.to_string()))
}

/// At the first start (no dashboard user yet) adds the admin: with `dashboard.default_password`
/// if set, else with a random password printed once to stderr. Only the hash is kept; later
/// starts neither print nor log it.
pub(crate) fn bootstrap_admin(users: &BuiltinDb, settings: &ApiSettings) -> Result<(), StartError> {
    if !users.is_empty() {
        if settings.default_password.is_some() {
            tracing::debug!("dashboard users exist; dashboard.default_password is only used at the first start");
        }
        return Ok(());
    }
    let (password, generated) = match &settings.default_password {
        Some(password) => (password.clone(), false),
        None => {
            let password: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(GENERATED_PASSWORD_LEN)
                .map(char::from)
                .collect();
            (password.into_bytes(), true)
        }
    };
    users
        .add_user(&settings.default_username, &password, true)
        .map_err(|e| StartError::Users(format!("cannot add the first admin: {e}")))?;
    if !users.flush(BOOTSTRAP_FLUSH) {
        return Err(StartError::Users(
            "the first admin's record did not reach the durable store".to_owned(),
        ));
    }
    if generated {
        // Stderr rather than the log: log files are often shipped elsewhere and kept.
        eprintln!(
            "portico: dashboard user `{}` created with the one-time password: {}\n\
             portico: it is shown only now; log in and change it (POST /api/v5/users/{}/change_pwd)",
            settings.default_username,
            String::from_utf8_lossy(&password),
            settings.default_username,
        );
        tracing::warn!(
            user = %settings.default_username,
            "first start: a one-time dashboard password was generated and printed to stderr"
        );
    }
    Ok(())
}

/// Live login tokens.
pub(crate) struct Tokens {
    ttl: Duration,
    live: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tokens {
    pub(crate) fn new(ttl: Duration) -> Tokens {
        Tokens {
            ttl,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A new token for `user`.
    pub(crate) fn issue(&self, user: &str) -> String {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|_, (_, expires)| *expires > now);
        if live.len() >= MAX_TOKENS
            && let Some(oldest) = live.iter().min_by_key(|(_, (_, e))| *e).map(|(t, _)| t.clone())
        {
            live.remove(&oldest);
        }
        live.insert(token.clone(), (user.to_owned(), now + self.ttl));
        token
    }

    /// The user of a live token.
    pub(crate) fn user(&self, token: &str) -> Option<String> {
        let mut live = self.live.lock();
        match live.get(token) {
            Some((user, expires)) if *expires > Instant::now() => Some(user.clone()),
            Some(_) => {
                live.remove(token);
                None
            }
            None => None,
        }
    }

    pub(crate) fn revoke(&self, token: &str) {
        self.live.lock().remove(token);
    }

    /// Ends every session of `user` (after a password change or deletion).
    pub(crate) fn revoke_user(&self, user: &str) {
        self.live.lock().retain(|_, (u, _)| u != user);
    }
}

/// Middleware: lets the request through with its [`Principal`] as an extension, or answers 401.
pub(crate) async fn require_auth(State(state): State<crate::State>, mut request: Request, next: Next) -> Response {
    let principal = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|value| authenticate(&state, value));
    match principal {
        Some(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        None => ApiError::unauthorized().into_response(),
    }
}

fn authenticate(state: &crate::AppState, authorization: &str) -> Option<Principal> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let user = state.tokens.user(credentials)?;
        // A user deleted since the login is logged out.
        state.users.get_user(&user)?;
        return Some(Principal::User(user));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (key, secret) = decoded.split_once(':')?;
        return state.keys.verify(key, secret).map(Principal::ApiKey);
    }
    None
}

/// Refuses API keys: managing users and keys is for dashboard users (as in EMQX).
pub(crate) fn users_only(principal: &Principal) -> Result<&str, ApiError> {
    match principal {
        Principal::User(user) => Ok(user),
        Principal::ApiKey(_) => Err(ApiError::forbidden("API keys cannot manage users or API keys")),
        Principal::Local => Err(ApiError::forbidden(
            "the local control socket cannot manage users or API keys; log in over HTTP",
        )),
    }
}

/// Dashboard users and the local control socket (`portico ctl admins`, `ctl data`); API keys
/// are refused (403). The user's name, `None` on the control socket.
pub(crate) fn admins_only(principal: &Principal) -> Result<Option<&str>, ApiError> {
    match principal {
        Principal::User(user) => Ok(Some(user)),
        Principal::Local => Ok(None),
        Principal::ApiKey(_) => Err(ApiError::forbidden(
            "API keys cannot manage dashboard users or data backups",
        )),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/v5/login`.
pub(crate) async fn login(
    State(state): State<crate::State>,
    body: Result<Json<Strict<LoginBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    if let Err(remaining) = state.lockout.check(&body.username, Instant::now()) {
        tracing::info!(user = %body.username, "dashboard login refused: locked");
        return Err(ApiError::locked(remaining));
    }
    let users = state.users.clone();
    let username = body.username.clone();
    // argon2 takes tens of milliseconds: off the async workers.
    let ok = tokio::task::spawn_blocking(move || users.verify_password(&username, body.password.as_bytes()))
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))?;
    if !ok {
        tracing::info!(user = %body.username, "dashboard login refused");
        if state.lockout.failed(&body.username, Instant::now()) {
            tracing::warn!(user = %body.username, "dashboard logins for this user name locked after repeated failures");
        }
        return Err(ApiError::unauthorized());
    }
    state.lockout.succeeded(&body.username);
    let token = state.tokens.issue(&body.username);
    Ok(Json(json!({
        "token": token,
        "version": env!("CARGO_PKG_VERSION"),
        "license": {"edition": "opensource"},
        "role": "administrator",
    }))
    .into_response())
}

/// `POST /api/v5/logout`: ends the session of the token it is called with.
pub(crate) async fn logout(State(state): State<crate::State>, request: Request) -> Result<StatusCode, ApiError> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(ApiError::unauthorized)?;
    users_only(&principal)?;
    if let Some(token) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())
    {
        state.tokens.revoke(token);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct ChangePassword {
    old_pwd: String,
    new_pwd: String,
}

/// Shortest new dashboard password.
pub(crate) const MIN_PASSWORD_LEN: usize = 8;

/// `POST /api/v5/users/{username}/change_pwd`: a user changes their own password; every token
/// of the user ends.
pub(crate) async fn change_password(
    State(state): State<crate::State>,
    axum::extract::Path(username): axum::extract::Path<String>,
    axum::Extension(principal): axum::Extension<Principal>,
    body: Result<Json<Strict<ChangePassword>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let me = users_only(&principal)?;
    if me != username {
        return Err(ApiError::forbidden("a user can only change their own password"));
    }
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    if body.new_pwd.len() < MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "the new password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let users = state.users.clone();
    let name = username.clone();
    let changed = tokio::task::spawn_blocking(move || {
        if !users.verify_password(&name, body.old_pwd.as_bytes()) {
            return Ok(false);
        }
        users
            .update_user(&name, Some(body.new_pwd.as_bytes()), None)
            .map(|_| true)
    })
    .await
    .map_err(|e| ApiError::internal(format!("password change failed: {e}")))?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !changed {
        return Err(ApiError::unauthorized());
    }
    state.tokens.revoke_user(&username);
    Ok(StatusCode::NO_CONTENT)
}
