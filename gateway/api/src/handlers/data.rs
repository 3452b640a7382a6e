//! `/data`: data export and import (EMQX 5.4+'s `/data/export`, `/data/files`,
//! `/data/import`). See [`crate::backup`] for the file and what it holds.
//!
//! A backup carries every password hash and API key of the node: only dashboard users and the
//! local control socket may make, read or import one; API keys get 403 (EMQX lets API keys
//! call these).

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, body::Bytes};
use portico_core::message::now_millis;
use portico_core::sys::format_rfc3339_utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Principal, admins_only};
use crate::backup::archive::{self, Meta};
use crate::backup::tables::{self, ImportReport};
use crate::backup::{BackupDir, FileInfo, check_name, export_name};
use crate::error::{ApiError, Strict, json_rejection, query_rejection};
use crate::paging::Page;

/// The body limit of `POST /data/files`: the largest backup plus room for the multipart
/// framing. Every other route keeps [`crate::MAX_BODY_BYTES`].
pub(crate) const MAX_UPLOAD_BODY: usize = archive::MAX_ARCHIVE_BYTES + 64 * 1024;

/// The form field carrying the file, as EMQX names it.
const UPLOAD_FIELD: &str = "filename";

fn backups(state: &crate::AppState) -> Result<BackupDir, ApiError> {
    state.backup_dir.clone().map(BackupDir::new).ok_or_else(|| {
        ApiError::bad_request("data export and import need node.data_dir: this node runs in memory mode")
    })
}

fn render(state: &crate::AppState, info: &FileInfo) -> Value {
    json!({
        "filename": info.filename,
        "size": info.size,
        "created_at": format_rfc3339_utc(info.created_at_ms),
        "node": state.broker.node_name(),
    })
}

fn checked_name(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(ApiError::bad_request)
}

fn io_error(what: &str, name: &str, error: &std::io::Error) -> ApiError {
    match error.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found("NOT_FOUND", format!("no backup file {name}")),
        std::io::ErrorKind::AlreadyExists => ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", error.to_string()),
        // The request is fine; the directory is full (as a 31st trace or 1025th API key).
        std::io::ErrorKind::QuotaExceeded => ApiError::new(StatusCode::CONFLICT, "LIMIT_REACHED", error.to_string()),
        std::io::ErrorKind::FileTooLarge => ApiError::bad_request(error.to_string()),
        _ => ApiError::internal(format!("{what} {name}: {error}")),
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("backup task failed: {e}")))
}

/// `POST /api/v5/data/export` body (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportBody {
    /// The tables to export (names in [`tables::ALL`]); absent: all.
    table_sets: Option<Vec<String>>,
}

/// `POST /api/v5/data/export`: writes a backup of the chosen tables (those this node has)
/// into the backup directory; answers `{filename, size, created_at, node, path}` (`path`, the
/// file on the node, is Portico's).
pub(crate) async fn export(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    admins_only(&principal)?;
    let backups = backups(&state)?;
    let body: ExportBody = if body.iter().all(u8::is_ascii_whitespace) {
        ExportBody::default()
    } else {
        let Strict(body) = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        body
    };
    let wanted: Vec<&str> = match &body.table_sets {
        None => tables::ALL.to_vec(),
        Some(names) => {
            if let Some(unknown) = names.iter().find(|n| !tables::ALL.contains(&n.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "table_sets: unknown table {unknown:?}; known: {}",
                    tables::ALL.join(", ")
                )));
            }
            tables::ALL
                .iter()
                .copied()
                .filter(|t| names.iter().any(|n| n == t))
                .collect()
        }
    };
    let worker = state.clone();
    let dir = backups.clone();
    let info = blocking(move || {
        let contents: Vec<(String, Vec<u8>)> = wanted
            .iter()
            .filter_map(|name| tables::export(&worker, name).map(|json| ((*name).to_owned(), json)))
            .collect();
        let now_ms = now_millis();
        let meta = Meta {
            format_version: archive::FORMAT_VERSION,
            portico_version: env!("CARGO_PKG_VERSION").to_owned(),
            node: worker.broker.node_name().to_owned(),
            created_at: format_rfc3339_utc(now_ms),
            tables: contents.iter().map(|(name, _)| name.clone()).collect(),
        };
        let name = export_name(now_ms);
        let bytes =
            archive::write(&meta, &contents).map_err(|e| ApiError::internal(format!("cannot pack the backup: {e}")))?;
        if bytes.len() > archive::MAX_ARCHIVE_BYTES {
            return Err(ApiError::bad_request(format!(
                "the backup would be {} bytes, more than the {} a backup may have; export fewer table_sets",
                bytes.len(),
                archive::MAX_ARCHIVE_BYTES
            )));
        }
        backups
            .save(&name, &bytes)
            .map_err(|e| io_error("cannot write", &name, &e))
    })
    .await??;
    tracing::info!(file = %info.filename, size = info.size, "data exported");
    let mut answer = render(&state, &info);
    // Portico's: where the file is on the node, for `portico ctl data export`.
    answer["path"] = Value::String(dir.path(&info.filename).display().to_string());
    Ok(Json(answer))
}

/// `GET /api/v5/data/files` query.
#[derive(Deserialize)]
pub(crate) struct FilesQuery {
    page: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/v5/data/files`: the backup files, newest first, paged.
pub(crate) async fn list(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<FilesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    admins_only(&principal)?;
    let Query(query) = query.map_err(query_rejection)?;
    let page = Page::new(query.page, query.limit)?;
    let backups = backups(&state)?;
    let files = blocking(move || backups.list())
        .await?
        .map_err(|e| ApiError::internal(format!("cannot list the backup directory: {e}")))?;
    Ok(Json(page.collect(files.iter(), |f| render(&state, f))))
}

/// `GET /api/v5/data/files/{filename}`: the file, as `application/octet-stream`.
pub(crate) async fn download(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(filename): Path<String>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    checked_name(&filename)?;
    let backups = backups(&state)?;
    let name = filename.clone();
    let bytes = blocking(move || backups.load(&name))
        .await?
        .map_err(|e| io_error("cannot read", &filename, &e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `DELETE /api/v5/data/files/{filename}`.
pub(crate) async fn delete(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    Path(filename): Path<String>,
) -> Result<StatusCode, ApiError> {
    admins_only(&principal)?;
    checked_name(&filename)?;
    let backups = backups(&state)?;
    let name = filename.clone();
    blocking(move || backups.delete(&name))
        .await?
        .map_err(|e| io_error("cannot delete", &filename, &e))?;
    tracing::info!(file = %filename, "backup file deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v5/data/files`: stores an uploaded backup (multipart/form-data, the file in
/// field `filename`) after checking that it reads as one. 204; 409 if the name is taken.
pub(crate) async fn upload(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<StatusCode, ApiError> {
    admins_only(&principal)?;
    let backups = backups(&state)?;
    let mut multipart = multipart.map_err(|e| ApiError::bad_request(format!("not multipart/form-data: {e}")))?;
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(e.status(), "BAD_REQUEST", format!("upload: {}", e.body_text()))
    };
    let (name, bytes) = loop {
        let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? else {
            return Err(ApiError::bad_request(format!(
                "upload: no field {UPLOAD_FIELD:?} with the file"
            )));
        };
        if field.name() != Some(UPLOAD_FIELD) {
            continue;
        }
        let name = field
            .file_name()
            .ok_or_else(|| ApiError::bad_request(format!("upload: field {UPLOAD_FIELD:?} has no file name")))?
            .to_owned();
        checked_name(&name)?;
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if bytes.len() + chunk.len() > archive::MAX_ARCHIVE_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "BAD_REQUEST",
                    format!("upload: the file is larger than {} bytes", archive::MAX_ARCHIVE_BYTES),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        break (name, bytes);
    };
    let stored = name.clone();
    blocking(move || {
        archive::read(&bytes, tables::ALL).map_err(|e| ApiError::bad_request(format!("{stored}: {e}")))?;
        backups
            .save(&stored, &bytes)
            .map_err(|e| io_error("cannot write", &stored, &e))
    })
    .await??;
    tracing::info!(file = %name, "backup file uploaded");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v5/data/import` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportBody {
    filename: String,
    /// EMQX's field: the node holding the file; only this node's are importable.
    node: Option<String>,
}

/// `POST /api/v5/data/import`: imports a backup file of the directory (an upsert, see
/// [`tables`]). 204 when every entry was imported; 400 with a per-table report otherwise
/// (what could be imported was).
pub(crate) async fn import(
    State(state): State<crate::State>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<Strict<ImportBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let Json(Strict(body)) = body.map_err(json_rejection)?;
    checked_name(&body.filename)?;
    if let Some(node) = &body.node
        && node != state.broker.node_name()
    {
        return Err(ApiError::bad_request(format!(
            "node: {node} is not this node ({})",
            state.broker.node_name()
        )));
    }
    let backups = backups(&state)?;
    let worker = state.clone();
    let filename = body.filename.clone();
    let report: ImportReport = blocking(move || {
        let bytes = backups
            .load(&filename)
            .map_err(|e| io_error("cannot read", &filename, &e))?;
        let archive =
            archive::read(&bytes, tables::ALL).map_err(|e| ApiError::bad_request(format!("{filename}: {e}")))?;
        tracing::info!(
            file = %filename,
            from_node = %archive.meta.node,
            from_version = %archive.meta.portico_version,
            created_at = %archive.meta.created_at,
            "importing a backup"
        );
        for ignored in &archive.ignored {
            tracing::warn!(file = %filename, entry = %ignored, "backup entry ignored");
        }
        let mut report = ImportReport::new();
        for name in tables::ALL {
            if let Some(json) = archive.tables.get(*name) {
                report.insert((*name).to_owned(), tables::import(&worker, name, json));
            }
        }
        // Writes made here must not hold back an unrelated client's acknowledgement.
        crate::forget_journal_ticket();
        Ok::<_, ApiError>(report)
    })
    .await??;
    let failed: Vec<String> = report
        .iter()
        .filter_map(|(name, outcome)| match outcome {
            Ok(table) if table.failed == 0 => None,
            Ok(table) => Some(format!(
                "{name}: {} of {} entries failed",
                table.failed,
                table.imported + table.skipped + table.failed
            )),
            Err(why) => Some(format!("{name}: {why}")),
        })
        .collect();
    let rendered: serde_json::Map<String, Value> = report
        .into_iter()
        .map(|(name, outcome)| {
            let value = match outcome {
                Ok(table) => serde_json::to_value(table).unwrap_or(Value::Null),
                Err(why) => json!({"error": why}),
            };
            (name, value)
        })
        .collect();
    if failed.is_empty() {
        let tables = Value::Object(rendered);
        tracing::info!(file = %body.filename, %tables, "data imported");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    tracing::warn!(file = %body.filename, problems = ?failed, "data import partly failed");
    Ok((
        StatusCode::BAD_REQUEST,
        Json(json!({
            "code": "BAD_REQUEST",
            "message": format!("import of {} partly failed: {}", body.filename, failed.join("; ")),
            "tables": rendered,
        })),
    )
        .into_response())
}
