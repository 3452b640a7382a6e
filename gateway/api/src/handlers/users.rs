//! `/users`: dashboard users (list, add, describe, delete). The users themselves live in the
//! dashboard's built-in database ([`crate::AppState::users`]); their descriptions, which that
//! database has no field for, in the durable store's key space [`DESCRIPTIONS_SPACE`]. API keys
//! may not call these (403), as with `/api_key`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use portico_auth::builtin::UserError;
use portico_core::journal::Journal;
use portico_core::store::StoreOp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{MIN_PASSWORD_LEN, Principal, admins_only};
use crate::error::{ApiError, Strict, json_rejection};

/// The durable store's key space of dashboard user descriptions.
pub(crate) const DESCRIPTIONS_SPACE: &str = "dashboard.user_descriptions";

/// Longest description.
pub(crate) const MAX_DESCRIPTION_LEN: usize = 1024;

/// Most dashboard users: bounds memory, the store and the time a listing takes.
pub(crate) const MAX_USERS: usize = 1024;

/// Descriptions by user name, and the lock that makes "describe" and "delete" (with their
/// "exists" and "last user" checks) one step each, so that two users deleting each other at
/// once cannot leave none.
pub(crate) struct Descriptions {
    journal: Option<Arc<Journal>>,
    by_user: RwLock<BTreeMap<String, String>>,
    changes: Mutex<()>,
}

impl Descriptions {
    pub(crate) fn open(journal: Option<Arc<Journal>>) -> Result<Descriptions, String> {
        let mut by_user = BTreeMap::new();
        if let Some(journal) = &journal {
            let rows = journal.store().kv_scan(DESCRIPTIONS_SPACE).map_err(|e| e.to_string())?;
            for (name, value) in rows {
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| format!("{DESCRIPTIONS_SPACE}: a user name is not UTF-8"))?;
                let text = String::from_utf8(value.to_vec())
                    .map_err(|_| format!("{DESCRIPTIONS_SPACE}: the description of {name} is not UTF-8"))?;
                by_user.insert(name, text);
            }
        }
        Ok(Descriptions {
            journal,
            by_user: RwLock::new(by_user),
            changes: Mutex::new(()),
        })
    }

    pub(crate) fn get(&self, user: &str) -> String {
        self.by_user.read().get(user).cloned().unwrap_or_default()
    }

    pub(crate) fn set(&self, user: &str, description: &str) {
        let mut by_user = self.by_user.write();
        if let Some(journal) = &self.journal {
            journal.submit(StoreOp::KvPut {
                space: DESCRIPTIONS_SPACE,
                key: Bytes::copy_from_slice(user.as_bytes()),
                value: Bytes::copy_from_slice(description.as_bytes()),
            });
        }
        by_user.insert(user.to_owned(), description.to_owned());
    }

    fn remove(&self, user: &str) {
        let mut by_user = self.by_user.write();
        if by_user.remove(user).is_some()
            && let Some(journal) = &self.journal
        {
            journal.submit(StoreOp::KvDelete {
                space: DESCRIPTIONS_SPACE,
                key: Bytes::copy_from_slice(user.as_bytes()),
            });
        }
    }
}

fn render(state: &crate::AppState, username: &str) -> Value {
    json!({
        "username": username,
        "description": state.descriptions.get(username),
        "role": "administrator",
        "backend": "local",
    })
}

fn user_not_found(username: &str) -> ApiError {
    ApiError::not_found("USER_NOT_FOUND", format!("dashboard user {username:?} not found"))
}

fn check_description(description: &str) -> Result<(), ApiError> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::bad_request(format!(
            "description: longer than {MAX_DESCRIPTION_LEN} bytes"
        )));
    }
    Ok(())
}

/// Every dashboard user name, in order.
fn all_users(state: &crate::AppState) -> Vec<String> {
    let page = state.users.list_users(1, MAX_USERS);
    page.users.into_iter().map(|u| u.user_id).collect()
}

/// `GET /api/v5/users`: every dashboard user (not paged, as EMQX).
pub(crate) async fn list(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    admins_only(&principal)?;
    let users = all_users(&state);
    Ok(Json(Value::Array(users.iter().map(|u| render(&state, u)).collect())))
}

/// `POST /api/v5/users` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    description: String,
    /// EMQX's field; only `administrator` exists here.
    role: Option<String>,
}

/// `POST /api/v5/users`: 200 with the user; 409 `ALREADY_EXISTS` if the name is taken.
pub(crate) async fn create(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<Strict<NewUser>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admins_only(&principal)?;
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    if body.username.is_empty() {
        return Err(ApiError::bad_request("username: must not be empty"));
    }
    if body.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "password: must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if body.role.as_deref().is_some_and(|r| r != "administrator") {
        return Err(ApiError::bad_request("role: only administrator is supported"));
    }
    check_description(&body.description)?;
    let worker = state.clone();
    let username = body.username.clone();
    // argon2 takes tens of milliseconds: off the async workers.
    // Not under the `changes` lock: hashing is slow, and `add_user` refuses a taken name by
    // itself.
    let added = tokio::task::spawn_blocking(move || {
        if worker.users.len() >= MAX_USERS {
            return Err(ApiError::bad_request(format!("at most {MAX_USERS} dashboard users")));
        }
        match worker.users.add_user(&body.username, body.password.as_bytes(), true) {
            Ok(()) => {
                worker.descriptions.set(&body.username, &body.description);
                Ok(())
            }
            Err(UserError::AlreadyExists(name)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                format!("dashboard user {name:?} already exists"),
            )),
            Err(error) => Err(ApiError::bad_request(error.to_string())),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("adding the user failed: {e}")))?;
    added?;
    tracing::info!(user = %username, "dashboard user added");
    Ok(Json(render(&state, &username)))
}

/// `PUT /api/v5/users/{username}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserUpdate {
    description: String,
    /// EMQX's field; only `administrator` exists here.
    role: Option<String>,
}

/// `PUT /api/v5/users/{username}`: changes the description.
pub(crate) async fn update(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
    body: Result<Json<Strict<UserUpdate>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    admins_only(&principal)?;
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    check_description(&body.description)?;
    if body.role.as_deref().is_some_and(|r| r != "administrator") {
        return Err(ApiError::bad_request("role: only administrator is supported"));
    }
    {
        let _changes = state.descriptions.changes.lock();
        if state.users.get_user(&username).is_none() {
            return Err(user_not_found(&username));
        }
        state.descriptions.set(&username, &body.description);
    }
    Ok(Json(render(&state, &username)))
}

/// `DELETE /api/v5/users/{username}`: 204; a user cannot delete themselves, and the last user
/// cannot be deleted (400). The user's tokens end.
pub(crate) async fn delete(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    let me = admins_only(&principal)?;
    if me == Some(username.as_str()) {
        return Err(ApiError::bad_request("a user cannot delete themselves"));
    }
    {
        let _changes = state.descriptions.changes.lock();
        if state.users.get_user(&username).is_none() {
            return Err(user_not_found(&username));
        }
        if state.users.len() <= 1 {
            return Err(ApiError::bad_request("the last dashboard user cannot be deleted"));
        }
        state
            .users
            .delete_user(&username)
            .map_err(|_| user_not_found(&username))?;
        state.descriptions.remove(&username);
    }
    state.tokens.revoke_user(&username);
    tracing::info!(user = %username, by = me.unwrap_or("portico ctl"), "dashboard user deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v5/users/{username}/password` body (Portico's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPassword {
    password: String,
}

/// `PUT /api/v5/users/{username}/password` (Portico's; EMQX has only `change_pwd`, which
/// needs the old password): an admin, or `portico ctl admins passwd`, sets a user's password.
/// 204; every token of the user ends.
pub(crate) async fn set_password(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
    body: Result<Json<Strict<SetPassword>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let by = admins_only(&principal)?.map(str::to_owned);
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    if body.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "password: must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let users = state.users.clone();
    let name = username.clone();
    // argon2 takes tens of milliseconds: off the async workers.
    tokio::task::spawn_blocking(move || users.update_user(&name, Some(body.password.as_bytes()), None))
        .await
        .map_err(|e| ApiError::internal(format!("setting the password failed: {e}")))?
        .map_err(|error| match error {
            UserError::NotFound(_) => user_not_found(&username),
            other => ApiError::bad_request(other.to_string()),
        })?;
    state.tokens.revoke_user(&username);
    tracing::info!(user = %username, by = by.as_deref().unwrap_or("portico ctl"), "dashboard user password set");
    Ok(StatusCode::NO_CONTENT)
}
