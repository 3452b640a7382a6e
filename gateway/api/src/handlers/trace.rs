//! `/trace`: EMQX 5's log trace. Create a trace of a client id, a topic filter or a peer IP
//! address; its events are written to a file (see `portico_trace`) read with `/trace/{name}/log`
//! or downloaded whole. One node: `log_size` has one entry and `node` is this node's name.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use portico_core::sys::format_rfc3339_utc;
use portico_trace::{Filter, Formatter, NewTrace, PayloadEncode, TraceError, TraceInfo, Tracer, check_name};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, json_rejection, query_rejection};
use crate::time::parse_time;

/// Most bytes one `/trace/{name}/log` answer carries; larger `bytes` are capped to it.
pub(crate) const MAX_LOG_BYTES: u64 = 1024 * 1024;
/// `bytes` when not given (EMQX's default).
const DEFAULT_LOG_BYTES: u64 = 1000;

fn tracer(state: &crate::State) -> Result<&Arc<Tracer>, ApiError> {
    state.trace.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the log trace is not running on this node",
        )
    })
}

fn trace_error(error: TraceError) -> ApiError {
    match error {
        TraceError::Invalid(_) => ApiError::bad_request(error.to_string()),
        // The request is fine; the node's state refuses it (as a 31st API key is).
        TraceError::TooMany => ApiError::new(StatusCode::CONFLICT, "LIMIT_REACHED", error.to_string()),
        TraceError::AlreadyExists(_) => ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", error.to_string()),
        TraceError::DuplicateCondition { .. } => {
            ApiError::new(StatusCode::CONFLICT, "DUPLICATE_CONDITION", error.to_string())
        }
        TraceError::NotFound(_) => ApiError::not_found("NOT_FOUND", error.to_string()),
        TraceError::Io(_) => ApiError::internal(error.to_string()),
    }
}

/// A trace name from the path, checked as on creation.
fn path_name(name: &str) -> Result<&str, ApiError> {
    check_name(name).map_err(trace_error)?;
    Ok(name)
}

fn render(info: &TraceInfo, node: &str) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(info.name));
    out.insert("type".into(), json!(info.filter.kind()));
    out.insert(info.filter.kind().into(), json!(info.filter.value()));
    out.insert("status".into(), json!(info.status.as_str()));
    out.insert("start_at".into(), json!(format_rfc3339_utc(info.start_at_ms)));
    out.insert("end_at".into(), json!(format_rfc3339_utc(info.end_at_ms)));
    out.insert("payload_encode".into(), json!(info.payload_encode.as_str()));
    out.insert("formatter".into(), json!(info.formatter.as_str()));
    out.insert("log_size".into(), json!({ node: info.log_size }));
    out.insert("dropped".into(), json!(info.dropped));
    Value::Object(out)
}

/// `GET /api/v5/trace`: every trace, newest start first.
pub(crate) async fn list(State(state): State<crate::State>) -> Result<Json<Value>, ApiError> {
    let tracer = tracer(&state)?;
    let node = state.broker.node_name();
    Ok(Json(Value::Array(
        tracer.list().iter().map(|info| render(info, node)).collect(),
    )))
}

/// A string field of the body: absent, or text (anything else is a 400).
fn text_field<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::bad_request(format!("{key}: expected a string"))),
    }
}

/// The body of `POST /trace` as a [`NewTrace`]; every problem a 400 naming the field.
fn new_trace(body: &Value) -> Result<NewTrace, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("expected a JSON object"));
    };
    let name = text_field(body, "name")?.ok_or_else(|| ApiError::bad_request("name: required"))?;
    check_name(name).map_err(trace_error)?;
    let kind = text_field(body, "type")?.ok_or_else(|| ApiError::bad_request("type: required"))?;
    if !matches!(kind, "clientid" | "topic" | "ip_address") {
        return Err(ApiError::bad_request(format!(
            "type: expected clientid, topic or ip_address, got {kind:?}"
        )));
    }
    let value =
        text_field(body, kind)?.ok_or_else(|| ApiError::bad_request(format!("{kind}: required for type {kind}")))?;
    let filter = Filter::new(kind, value).map_err(ApiError::bad_request)?;
    let time = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => parse_time(key, value).map(Some).map_err(ApiError::bad_request),
    };
    let start_at_ms = time("start_at")?;
    let end_at_ms = time("end_at")?;
    let payload_encode = match text_field(body, "payload_encode")? {
        None => PayloadEncode::default(),
        Some(text) => PayloadEncode::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("payload_encode: expected text, hex or hidden, got {text:?}"))
        })?,
    };
    let formatter = match text_field(body, "formatter")? {
        None => Formatter::default(),
        Some(text) => Formatter::parse(text)
            .ok_or_else(|| ApiError::bad_request(format!("formatter: expected text or json, got {text:?}")))?,
    };
    Ok(NewTrace {
        name: name.to_owned(),
        filter,
        start_at_ms,
        end_at_ms,
        payload_encode,
        formatter,
    })
}

/// `POST /api/v5/trace`: create a trace; the trace as listed.
pub(crate) async fn create(
    State(state): State<crate::State>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let tracer = tracer(&state)?;
    let new = new_trace(&body)?;
    let info = tracer.create(new).map_err(trace_error)?;
    crate::forget_journal_ticket();
    Ok(Json(render(&info, state.broker.node_name())))
}

/// `DELETE /api/v5/trace`: delete every trace and its file.
pub(crate) async fn clear(State(state): State<crate::State>) -> Result<StatusCode, ApiError> {
    tracer(&state)?.clear().map_err(trace_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v5/trace/{name}`: delete a trace and its file.
pub(crate) async fn delete(
    State(state): State<crate::State>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    tracer(&state)?.delete(path_name(&name)?).map_err(trace_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v5/trace/{name}/stop`: stop a trace before its end (its file stays). Answers
/// as EMQX: `{"name": ..., "enable": false}`.
pub(crate) async fn stop(State(state): State<crate::State>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let info = tracer(&state)?.stop(path_name(&name)?).map_err(trace_error)?;
    Ok(Json(json!({"name": info.name, "enable": false})))
}

/// The query of `/trace/{name}/log` and `/download`.
#[derive(Deserialize)]
pub(crate) struct LogQuery {
    bytes: Option<u64>,
    position: Option<u64>,
    node: Option<String>,
}

impl LogQuery {
    /// Only this node's logs exist: another `node` is EMQX's 400 `NODE_ERROR`.
    fn check_node(&self, state: &crate::State) -> Result<(), ApiError> {
        match &self.node {
            Some(node) if node != state.broker.node_name() => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "NODE_ERROR",
                format!("node {node:?} not found"),
            )),
            _ => Ok(()),
        }
    }
}

/// `GET /api/v5/trace/{name}/log?bytes=&position=`: up to `bytes` (default 1000, at most
/// 1 MiB) of the file from `position`: `{"items": text, "meta": {"position": next, "bytes"}}`.
pub(crate) async fn log(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    query.check_node(&state)?;
    let bytes = query.bytes.unwrap_or(DEFAULT_LOG_BYTES).min(MAX_LOG_BYTES);
    let position = query.position.unwrap_or(0);
    let tracer = tracer(&state)?.clone();
    let name = path_name(&name)?.to_owned();
    // File reads are blocking: off the async workers.
    let read = tokio::task::spawn_blocking(move || tracer.read_log(&name, position, bytes as usize))
        .await
        .map_err(|e| ApiError::internal(format!("trace log read failed: {e}")))?;
    let (items, next) = read.map_err(trace_error)?;
    Ok(Json(
        json!({"items": items, "meta": {"position": next, "bytes": bytes}}),
    ))
}

/// `GET /api/v5/trace/{name}/download`: the whole file as a plain-text attachment (EMQX
/// serves a zip of every node's file).
pub(crate) async fn download(
    State(state): State<crate::State>,
    Path(name): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    query.check_node(&state)?;
    let name = path_name(&name)?;
    let path = tracer(&state)?.log_file(name).map_err(trace_error)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => Some(file),
        // Nothing traced yet and the file not created: an empty log.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ApiError::internal(format!("cannot open {}: {e}", path.display()))),
    };
    let body = match file {
        Some(file) => Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        None => Body::empty(),
    };
    let disposition = format!("attachment; filename=\"{name}.log\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
