//! `PUT|DELETE /gateways/{name}` and `POST /gateways/{name}/listeners`,
//! `PUT|DELETE /gateways/{name}/listeners/{id}`: a gateway's configuration changed at run time.
//!
//! The server validates the change exactly as it validates the configuration file, keeps it in
//! the API-override layer (`{node.data_dir}/configs/api.toml`) and restarts the gateway with it.
//! An invalid body gets 400 with one `{key, reason}` per problem, as `POST /configs/reload`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::gateways::render_listener;
use crate::control::{ConfigChangeError, GatewayChange};
use crate::error::{ApiError, json_rejection};

/// The body as a JSON object, or 400.
fn object(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, ApiError> {
    match body {
        Ok(Json(Value::Object(map))) => Ok(map),
        Ok(Json(other)) => Err(ApiError::bad_request(format!(
            "expected a JSON object, got {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        ))),
        Err(rejection) => Err(json_rejection(rejection)),
    }
}

/// Runs the change: `ok()` when done, else the error's answer.
async fn change(state: &crate::AppState, name: &str, change: GatewayChange, ok: impl FnOnce() -> Response) -> Response {
    // The kind only: bodies may hold secrets (DTLS key passwords).
    let what = match &change {
        GatewayChange::Update(_) => "update".to_owned(),
        GatewayChange::Unload => "unload".to_owned(),
        GatewayChange::AddListener(_) => "add listener".to_owned(),
        GatewayChange::UpdateListener(id, _) => format!("update listener {id}"),
        GatewayChange::RemoveListener(id) => format!("remove listener {id}"),
    };
    match state.control.change_gateway(name, change).await {
        Ok(()) => {
            tracing::info!(gateway = %name, change = %truncate(&what), "gateway configuration changed through the API");
            ok()
        }
        Err(ConfigChangeError::NotFound(why)) => ApiError::not_found("NOT_FOUND", why).into_response(),
        Err(ConfigChangeError::Invalid(problems)) => {
            let message = match problems.first() {
                Some(first) if problems.len() == 1 => format!("invalid configuration: {}", first.reason),
                Some(first) => format!(
                    "invalid configuration: {} (and {} more problem(s))",
                    first.reason,
                    problems.len() - 1
                ),
                None => "invalid configuration".to_owned(),
            };
            let errors: Vec<Value> = problems
                .iter()
                .map(|p| json!({"key": p.key, "reason": p.reason}))
                .collect();
            let body = json!({"code": "BAD_REQUEST", "message": message, "errors": errors});
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(ConfigChangeError::Failed(why)) => ApiError::internal(why).into_response(),
    }
}

/// Log lines stay short whatever listener id the path carries.
fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The listener `id` of gateway `name` as it now runs (or is configured), rendered.
fn listener(state: &crate::AppState, name: &str, id: &str) -> Value {
    state
        .control
        .gateways()
        .into_iter()
        .find(|g| g.name == name)
        .and_then(|g| g.listeners.into_iter().find(|l| l.id == id))
        .map_or_else(|| json!({"id": id}), |l| render_listener(&l))
}

/// EMQX's listener id for a body: `{gateway}:{type}:{name}`.
fn listener_id(gateway: &str, body: &Map<String, Value>) -> Option<String> {
    let kind = body.get("type")?.as_str()?;
    let name = body.get("name")?.as_str()?;
    Some(format!("{gateway}:{kind}:{name}"))
}

/// `PUT /api/v5/gateways/{name}`: load or update; 204.
pub(crate) async fn update(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    match object(body) {
        Ok(body) => {
            change(&state, &name, GatewayChange::Update(body), || {
                StatusCode::NO_CONTENT.into_response()
            })
            .await
        }
        Err(error) => error.into_response(),
    }
}

/// `DELETE /api/v5/gateways/{name}`: stop and keep off; 204.
pub(crate) async fn unload(State(state): State<crate::State>, Path(name): Path<String>) -> Response {
    change(&state, &name, GatewayChange::Unload, || {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

/// `POST /api/v5/gateways/{name}/listeners`: 201 with the listener.
pub(crate) async fn add_listener(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let body = match object(body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let id = listener_id(&name, &body).unwrap_or_default();
    change(&state, &name, GatewayChange::AddListener(body), || {
        (StatusCode::CREATED, Json(listener(&state, &name, &id))).into_response()
    })
    .await
}

/// `PUT /api/v5/gateways/{name}/listeners/{id}`: 200 with the listener.
pub(crate) async fn update_listener(
    State(state): State<crate::State>,
    Path((name, id)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let body = match object(body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let full = if id.starts_with(&format!("{name}:")) {
        id.clone()
    } else {
        format!("{name}:{id}")
    };
    change(&state, &name, GatewayChange::UpdateListener(id, body), || {
        Json(listener(&state, &name, &full)).into_response()
    })
    .await
}

/// `DELETE /api/v5/gateways/{name}/listeners/{id}`: 204.
pub(crate) async fn remove_listener(
    State(state): State<crate::State>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    change(&state, &name, GatewayChange::RemoveListener(id), || {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}
