//! `portico ctl data export|import`: backups through `/api/v5/data` (EMQX's `emqx ctl data`).
//! `import` takes a local file (uploaded through the socket, then imported) or the name of a
//! file already in the node's backup directory.

use std::io::Read as _;
use std::path::Path;

use bytes::Bytes;
use clap::Subcommand;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::client::{Ctl, CtlError, api_error, encode, text};

/// Largest file `data import` uploads (the API's limit).
const MAX_UPLOAD: u64 = 100 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Export the node's data to a backup file in its backup directory; prints the file's path.
    Export {
        /// Only these tables (repeatable): builtin_authn, builtin_authz, banned,
        /// retained_messages, dashboard_users, api_keys, psk. Default: all.
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Import a backup: a local file, or the name of a file in the node's backup directory.
    Import {
        /// A path to a `.tar.gz` backup, or a backup file name known to the node.
        file: String,
    },
    /// The backup files in the node's backup directory.
    List,
}

impl Ctl {
    pub(crate) async fn data(&self, command: &DataCommand) -> Result<String, CtlError> {
        match command {
            DataCommand::Export { tables } => {
                let body = if tables.is_empty() {
                    json!({})
                } else {
                    json!({"table_sets": tables})
                };
                let answer = self.call(Method::POST, "/api/v5/data/export", Some(body)).await?;
                self.render(answer, |a| match a.get("path") {
                    Some(path) => format!("{}\n", text(path)),
                    None => format!("{}\n", text(&a["filename"])),
                })
            }
            DataCommand::Import { file } => {
                let name = self.upload_if_local(file).await?;
                let body = json!({"filename": name});
                self.call(Method::POST, "/api/v5/data/import", Some(body)).await?;
                Ok(self.done(&format!("data imported from {name}")))
            }
            DataCommand::List => {
                let rows = self.list_all("/api/v5/data/files", &[]).await?;
                self.render_rows(rows, |f| {
                    format!(
                        "{} size:{} created_at:{}",
                        text(&f["filename"]),
                        text(&f["size"]),
                        text(&f["created_at"])
                    )
                })
            }
        }
    }

    /// For a local file: uploads it unless the node holds the same file under that name;
    /// the name to import. A bare name that is not a local file is the node's.
    async fn upload_if_local(&self, file: &str) -> Result<String, CtlError> {
        let path = Path::new(file);
        let is_local = file.contains('/') || path.is_file();
        if !is_local {
            return Ok(file.to_owned());
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| CtlError::Config(format!("{file}: not a file name")))?
            .to_owned();
        let bytes = read_bounded(path)?;
        let boundary = format!("portico-{:016x}", rand_u64());
        let mut body = Vec::with_capacity(bytes.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let (status, answer) = self
            .send(
                Method::POST,
                "/api/v5/data/files",
                Some((&content_type, Bytes::from(body))),
            )
            .await?;
        if status.is_success() {
            return Ok(name);
        }
        if status == StatusCode::CONFLICT {
            // Already there (say, the file of an export on this node): import it if it is the
            // same file, refuse otherwise rather than import something else.
            let uri = format!("/api/v5/data/files/{}", encode(&name));
            let (status, theirs) = self.send(Method::GET, &uri, None).await?;
            if status.is_success() && theirs.as_ref() == bytes.as_slice() {
                return Ok(name);
            }
            return Err(CtlError::Api {
                code: "ALREADY_EXISTS".to_owned(),
                message: format!("the node has another backup named {name}; rename the file or delete the node's"),
            });
        }
        let value: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        Err(api_error(status, &value))
    }
}

/// Reads a local backup file, at most [`MAX_UPLOAD`] bytes.
fn read_bounded(path: &Path) -> Result<Vec<u8>, CtlError> {
    let cannot = |e: std::io::Error| CtlError::Config(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_UPLOAD + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_UPLOAD {
        return Err(CtlError::Config(format!(
            "{} is larger than {MAX_UPLOAD} bytes, the most a backup may have",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A boundary that the file's bytes are unlikely to contain (the API would misparse a file
/// that did; 64 random bits make that practically impossible).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
