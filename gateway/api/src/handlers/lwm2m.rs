//! EMQX's LwM2M device endpoints (`/gateways/lwm2m/clients/{clientid}/...`): read, write and
//! observe sent to the device through its channel, and the last result of a command looked up.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::control::ControlError;
use crate::error::{ApiError, query_rejection};

/// The value types `write` takes (EMQX's list).
pub(crate) const DATA_TYPES: [&str; 7] = ["Integer", "Float", "Time", "String", "Boolean", "Opaque", "Objlnk"];

/// Only the `lwm2m` gateway has these endpoints; an unknown client is EMQX's `CLIENT_NOT_FOUND`.
fn check_gateway(name: &str) -> Result<(), ApiError> {
    if name == "lwm2m" {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "NOT_FOUND",
            format!("gateway {name:?} has no device commands (only lwm2m)"),
        ))
    }
}

fn control_error(error: ControlError) -> ApiError {
    match error {
        ControlError::NotFound(why) => ApiError::not_found("CLIENT_NOT_FOUND", why),
        other => other.into(),
    }
}

/// The `path` query parameter: an LwM2M path (`/3/0/7`).
fn checked_path(path: Option<String>) -> Result<String, ApiError> {
    match path {
        Some(path) if path.starts_with('/') => Ok(path),
        Some(path) => Err(ApiError::bad_request(format!(
            "path: expected /object[/instance[/resource]], got {path:?}"
        ))),
        None => Err(ApiError::bad_request("path is required")),
    }
}

/// The gateway checked, the query read and its `path` checked: what every handler here starts
/// with.
fn command_query(
    name: &str,
    query: Result<Query<CommandQuery>, QueryRejection>,
) -> Result<(String, CommandQuery), ApiError> {
    check_gateway(name)?;
    let Query(mut query) = query.map_err(query_rejection)?;
    let path = checked_path(query.path.take())?;
    Ok((path, query))
}

/// Query of `read`, `write`, `observe` and `lookup`.
#[derive(Deserialize)]
pub(crate) struct CommandQuery {
    path: Option<String>,
    action: Option<String>,
    enable: Option<String>,
    #[serde(rename = "type")]
    data_type: Option<String>,
    value: Option<String>,
}

async fn send(state: &crate::AppState, client_id: &str, msg_type: &str, data: Value) -> Result<StatusCode, ApiError> {
    let mut command = Map::new();
    command.insert("msgType".to_owned(), Value::from(msg_type));
    command.insert("data".to_owned(), data);
    state.control.lwm2m_command(client_id, command).map_err(control_error)?;
    tracing::info!(%client_id, msg_type, "LwM2M command sent through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v5/gateways/lwm2m/clients/{clientid}/read?path=`.
pub(crate) async fn read(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
    query: Result<Query<CommandQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (path, _) = command_query(&name, query)?;
    send(&state, &client_id, "read", json!({"path": path})).await
}

/// `POST /api/v5/gateways/lwm2m/clients/{clientid}/write?path=&type=&value=`.
pub(crate) async fn write(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
    query: Result<Query<CommandQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (path, query) = command_query(&name, query)?;
    let data_type = query
        .data_type
        .ok_or_else(|| ApiError::bad_request("type is required"))?;
    if !DATA_TYPES.contains(&data_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "type: expected one of {}, got {data_type:?}",
            DATA_TYPES.join(", ")
        )));
    }
    let value = query.value.ok_or_else(|| ApiError::bad_request("value is required"))?;
    send(
        &state,
        &client_id,
        "write",
        json!({"path": path, "type": data_type, "value": value}),
    )
    .await
}

/// `POST /api/v5/gateways/lwm2m/clients/{clientid}/observe?path=&enable=`.
pub(crate) async fn observe(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
    query: Result<Query<CommandQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (path, query) = command_query(&name, query)?;
    let msg_type = match query.enable.as_deref() {
        Some("true" | "1") => "observe",
        Some("false" | "0") => "cancel-observe",
        other => {
            return Err(ApiError::bad_request(format!(
                "enable: expected true or false, got {other:?}"
            )));
        }
    };
    send(&state, &client_id, msg_type, json!({"path": path})).await
}

/// `GET /api/v5/gateways/lwm2m/clients/{clientid}/lookup?path=&action=`: the last result of
/// that command, or code 6.01 `reply_not_received`.
pub(crate) async fn lookup(
    State(state): State<crate::State>,
    Path((name, client_id)): Path<(String, String)>,
    query: Result<Query<CommandQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (path, query) = command_query(&name, query)?;
    let action = query
        .action
        .ok_or_else(|| ApiError::bad_request("action is required"))?;
    let found = state
        .control
        .lwm2m_lookup(&client_id, &path, &action)
        .map_err(control_error)?;
    let mut answer = json!({"clientid": client_id, "path": path, "action": action});
    match found {
        Some(Value::Object(result)) => {
            for (key, value) in result {
                answer[key] = value;
            }
        }
        _ => {
            answer["code"] = json!("6.01");
            answer["codeMsg"] = json!("reply_not_received");
        }
    }
    Ok(Json(answer))
}
