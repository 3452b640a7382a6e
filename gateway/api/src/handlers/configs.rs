//! `/configs`: the running configuration (secrets masked by the server) and its reload.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::control::{ReloadError, ReloadInfo};
use crate::error::ApiError;

/// `GET /api/v5/configs`: every top-level section.
pub(crate) async fn all(State(state): State<crate::State>) -> Json<Value> {
    Json(state.control.config_json())
}

/// `GET /api/v5/configs/{section}`: one top-level section; 404 for a key the configuration
/// does not have.
pub(crate) async fn section(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.control.config_json() {
        Value::Object(mut sections) => sections
            .remove(&name)
            .map(Json)
            .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no configuration section named {name:?}"))),
        _ => Err(ApiError::not_found(
            "NOT_FOUND",
            format!("no configuration section named {name:?}"),
        )),
    }
}

/// `POST /api/v5/configs/reload`: reads the file and environment again, as SIGHUP does.
pub(crate) async fn reload(State(state): State<crate::State>) -> Response {
    match state.control.reload().await {
        Ok(report) => Json(render(&report)).into_response(),
        Err(ReloadError::Invalid(problems)) => {
            let errors: Vec<Value> = problems
                .iter()
                .map(|p| json!({"key": p.key, "reason": p.reason}))
                .collect();
            let body = json!({
                "code": "BAD_REQUEST",
                "message": "the configuration is invalid; nothing was changed",
                "errors": errors,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(ReloadError::Failed(why)) => ApiError::internal(why).into_response(),
    }
}

fn render(report: &ReloadInfo) -> Value {
    json!({
        "started": report.started,
        "restarted": report.restarted,
        "stopped": report.stopped,
        "failed": report.failed.iter().map(|(id, why)| json!({"id": id, "reason": why})).collect::<Vec<_>>(),
    })
}
