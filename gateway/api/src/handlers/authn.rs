//! `/authentication`: the configured authenticators, and the users of a `password_based`
//! `built_in_database` one (list, add, change, delete, import). The users live in the server's
//! [`BuiltinDb`], which keeps every change in the durable store; the server hands it over
//! through [`crate::Control::authenticators`].
//!
//! Passwords are taken, hashed by the database and forgotten: never answered, never logged.
//! Hashing (argon2 by default) takes milliseconds, so it runs on the blocking pool.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use portico_auth::builtin::{BuiltinDb, ImportKind, ImportReport, UserError, UserInfo};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::AuthenticatorInfo;
use crate::error::{ApiError, Strict, json_rejection, query_rejection};
use crate::paging::Page;

/// EMQX's rendering of an authenticator: its settings plus `id`, `mechanism`, `backend`,
/// `enable`.
fn render(info: &AuthenticatorInfo) -> Value {
    let mut map = info.settings.clone();
    map.insert("id".to_owned(), json!(info.id));
    map.insert("mechanism".to_owned(), json!(info.mechanism));
    if let Some(backend) = info.backend {
        map.insert("backend".to_owned(), json!(backend));
    }
    map.insert("enable".to_owned(), json!(info.enable));
    Value::Object(map)
}

fn find(state: &crate::State, id: &str) -> Result<AuthenticatorInfo, ApiError> {
    state
        .control
        .authenticators()
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no authenticator {id:?}")))
}

/// The user database of authenticator `id`; 404 when there is none or it keeps no users.
fn users_of(state: &crate::State, id: &str) -> Result<Arc<BuiltinDb>, ApiError> {
    find(state, id)?.users.ok_or_else(|| {
        ApiError::not_found(
            "NOT_FOUND",
            format!("authenticator {id:?} has no user database (only password_based:built_in_database has)"),
        )
    })
}

fn user_error(error: UserError) -> ApiError {
    match error {
        UserError::AlreadyExists(_) => ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", error.to_string()),
        UserError::NotFound(_) => ApiError::not_found("NOT_FOUND", error.to_string()),
        UserError::Hash(_) => ApiError::internal(error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    }
}

fn render_user(user: &UserInfo) -> Value {
    json!({"user_id": user.user_id, "is_superuser": user.is_superuser})
}

/// Runs a hashing database call on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let out = work();
        crate::forget_journal_ticket();
        out
    })
    .await
    .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))
}

/// `GET /api/v5/authentication`: the chain, in order.
pub(crate) async fn list(State(state): State<crate::State>) -> Json<Value> {
    Json(Value::Array(
        state.control.authenticators().iter().map(render).collect(),
    ))
}

/// `GET /api/v5/authentication/{id}`.
pub(crate) async fn get(State(state): State<crate::State>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&find(&state, &id)?)))
}

/// `GET /api/v5/authentication/{id}/users` query.
#[derive(Deserialize)]
pub(crate) struct UsersQuery {
    page: Option<usize>,
    limit: Option<usize>,
    like_user_id: Option<String>,
    is_superuser: Option<bool>,
}

/// `GET /api/v5/authentication/{id}/users`: paged, in user id order.
pub(crate) async fn list_users(
    State(state): State<crate::State>,
    Path(id): Path<String>,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let db = users_of(&state, &id)?;
    let like = query.like_user_id.as_deref();
    let listed = db.list_users_where(page.page, page.limit, |user_id, superuser| {
        like.is_none_or(|like| user_id.contains(like)) && query.is_superuser.is_none_or(|s| s == superuser)
    });
    Ok(Json(json!({
        "data": listed.users.iter().map(render_user).collect::<Vec<_>>(),
        "meta": {"page": listed.page, "limit": listed.limit, "count": listed.count, "hasnext": listed.has_next},
    })))
}

/// `POST /api/v5/authentication/{id}/users` body.
#[derive(Deserialize)]
pub(crate) struct NewUser {
    user_id: String,
    password: String,
    #[serde(default)]
    is_superuser: bool,
}

/// `POST /api/v5/authentication/{id}/users` → 201 `{user_id, is_superuser}`.
pub(crate) async fn create_user(
    State(state): State<crate::State>,
    Path(id): Path<String>,
    body: Result<Json<Strict<NewUser>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let db = users_of(&state, &id)?;
    let Json(Strict(user)) = body.map_err(json_rejection)?;
    if user.password.is_empty() {
        return Err(ApiError::bad_request("password: must not be empty"));
    }
    let (user_id, superuser) = (user.user_id.clone(), user.is_superuser);
    blocking(move || db.add_user(&user.user_id, user.password.as_bytes(), user.is_superuser))
        .await?
        .map_err(user_error)?;
    tracing::info!(authenticator = %id, user_id = %user_id, "built-in user added");
    Ok((
        StatusCode::CREATED,
        Json(json!({"user_id": user_id, "is_superuser": superuser})),
    ))
}

/// `GET /api/v5/authentication/{id}/users/{user_id}`.
pub(crate) async fn get_user(
    State(state): State<crate::State>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let db = users_of(&state, &id)?;
    let user = db
        .get_user(&user_id)
        .ok_or_else(|| user_error(UserError::NotFound(user_id)))?;
    Ok(Json(render_user(&user)))
}

/// `PUT /api/v5/authentication/{id}/users/{user_id}` body.
#[derive(Deserialize)]
pub(crate) struct UserChange {
    password: Option<String>,
    is_superuser: Option<bool>,
}

/// `PUT /api/v5/authentication/{id}/users/{user_id}` → `{user_id, is_superuser}`.
pub(crate) async fn update_user(
    State(state): State<crate::State>,
    Path((id, user_id)): Path<(String, String)>,
    body: Result<Json<Strict<UserChange>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let db = users_of(&state, &id)?;
    let Json(Strict(change)) = body.map_err(json_rejection)?;
    if change.password.as_deref() == Some("") {
        return Err(ApiError::bad_request("password: must not be empty"));
    }
    let target = user_id.clone();
    let user = blocking(move || {
        db.update_user(
            &target,
            change.password.as_deref().map(str::as_bytes),
            change.is_superuser,
        )
    })
    .await?
    .map_err(user_error)?;
    tracing::info!(authenticator = %id, user_id = %user_id, "built-in user changed");
    Ok(Json(render_user(&user)))
}

/// `DELETE /api/v5/authentication/{id}/users/{user_id}` → 204.
pub(crate) async fn delete_user(
    State(state): State<crate::State>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let db = users_of(&state, &id)?;
    let deleted = db.delete_user(&user_id);
    crate::forget_journal_ticket();
    deleted.map_err(user_error)?;
    tracing::info!(authenticator = %id, user_id = %user_id, "built-in user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v5/authentication/{id}/import_users` query.
#[derive(Deserialize)]
pub(crate) struct ImportQuery {
    r#type: Option<String>,
}

/// `POST /api/v5/authentication/{id}/import_users?type=plain|hash`: the body is EMQX's JSON
/// array of users, or its CSV when the content type says `csv`. Users already present are
/// skipped; each bad entry is reported and the others imported.
pub(crate) async fn import_users(
    State(state): State<crate::State>,
    Path(id): Path<String>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let db = users_of(&state, &id)?;
    let kind = match query.r#type.as_deref() {
        Some(name) => ImportKind::from_name(name)
            .ok_or_else(|| ApiError::bad_request(format!("type: expected plain or hash, got {name:?}")))?,
        None => return Err(ApiError::bad_request("type: required, plain or hash")),
    };
    let text = String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("csv"));
    let report = blocking(move || {
        if csv {
            db.import_csv(&text, kind)
        } else {
            db.import_json(&text, kind)
        }
    })
    .await?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    tracing::info!(
        authenticator = %id,
        added = report.added,
        skipped = report.skipped,
        failed = report.failed,
        "built-in users imported"
    );
    Ok(Json(render_report(&report)))
}

/// EMQX's `{total, success, override, skipped, failed}`, plus the reasons of the failures.
fn render_report(report: &ImportReport) -> Value {
    let failures: Vec<Value> = report
        .failures
        .iter()
        .map(|f| json!({"location": f.location.to_string(), "user_id": f.user_id, "reason": f.reason}))
        .collect();
    json!({
        "total": report.total(),
        "success": report.added,
        "override": 0,
        "skipped": report.skipped,
        "failed": report.failed,
        "failures": failures,
    })
}
