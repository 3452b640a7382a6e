//! The local control socket: the API's routes on a Unix domain socket, for `portico ctl`.
//!
//! Security model: the filesystem authenticates. The socket file is mode 0600, so only the
//! node's user (and root) can connect, and whoever can connect is the node's operator: requests
//! skip the token and API-key check and act as the `Local` principal, which may do
//! what an API key may (not manage dashboard users or API keys). Nothing of this is on TCP.
//!
//! The socket is bound inside a fresh directory of mode 0700, made owner-only there, then renamed
//! onto its final path: no other user can connect between the bind and the `chmod`, and a stale
//! socket left by a crashed run is replaced in one step. A socket that still answers belongs to
//! a running node and is left alone (the start fails); a path that is not a socket is never
//! overwritten. At shutdown the socket is removed, unless something else has replaced it since.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest path a Unix socket can be bound to on Linux (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The socket's file mode: read and write for the owner only.
pub const SOCKET_MODE: u32 = 0o600;

/// A bound local control socket, not yet serving.
pub(crate) struct LocalSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we made: at shutdown only that file is removed.
    identity: (u64, u64),
}

impl LocalSocket {
    /// Binds `path` as described in the module documentation. The error says why, without the
    /// path (the caller names it).
    pub(crate) fn bind(path: &Path) -> Result<LocalSocket, String> {
        let file_name = path
            .file_name()
            .ok_or_else(|| "the path names no file".to_owned())?
            .to_string_lossy()
            .into_owned();
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        check_existing(path)?;

        // A short name: the temporary path must fit in `sun_path` too.
        let staging = parent.join(format!(".ctl-{}", std::process::id()));
        let staged = staging.join("s");
        if staged.as_os_str().len() > MAX_SOCKET_PATH || path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(format!(
                "too long for a Unix socket (at most {MAX_SOCKET_PATH} bytes, and binding needs {} for {}); \
                 use a shorter node.data_dir or an absolute node.ctl_socket",
                staged.as_os_str().len(),
                staged.display()
            ));
        }
        match std::fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove the leftover {}: {e}", staging.display())),
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        let bound = bind_staged(&staged, path);
        // The directory is empty once the socket is renamed out (or was never bound).
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_dir(&staging);
        let listener = bound?;
        let metadata = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read it back: {e}"))?;
        tracing::debug!(socket = %file_name, "control socket bound");
        Ok(LocalSocket {
            listener,
            path: path.to_owned(),
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// Serves `app` until `shutdown` is cancelled, then removes the socket file.
    pub(crate) fn serve(self, app: Router, shutdown: CancellationToken, tasks: &TaskTracker) {
        let LocalSocket {
            listener,
            path,
            identity,
        } = self;
        tasks.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, path = %path.display(), "local control socket failed");
            }
            remove_if_ours(&path, identity);
        });
    }
}

/// Refuses a path that is not a socket or a socket a live process answers on.
fn check_existing(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(
                    "another process is serving on it (is a node already running with this data_dir?)".to_owned(),
                );
            }
            tracing::info!(path = %path.display(), "replacing a stale control socket from an earlier run");
            Ok(())
        }
        Ok(_) => Err("exists and is not a socket; remove it or set node.ctl_socket to another path".to_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot inspect it: {e}")),
    }
}

fn bind_staged(staged: &Path, path: &Path) -> Result<UnixListener, String> {
    let listener = UnixListener::bind(staged).map_err(|e| format!("cannot bind {}: {e}", staged.display()))?;
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| format!("cannot set mode {SOCKET_MODE:o} on {}: {e}", staged.display()))?;
    std::fs::rename(staged, path).map_err(|e| format!("cannot move {} into place: {e}", staged.display()))?;
    Ok(listener)
}

fn remove_if_ours(path: &Path, identity: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if (metadata.dev(), metadata.ino()) == identity => {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(%error, path = %path.display(), "cannot remove the control socket");
            }
        }
        Ok(_) => tracing::warn!(path = %path.display(), "the control socket was replaced by another file; left alone"),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portico-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[tokio::test]
    async fn binds_owner_only_and_replaces_a_stale_socket() {
        let dir = dir("stale");
        let path = dir.join("ctl.sock");
        // A socket nobody listens on any more, as a crashed run leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
        let socket = LocalSocket::bind(&path).expect("binds over the stale socket");
        let metadata = std::fs::metadata(&path).expect("socket file");
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.permissions().mode() & 0o777, SOCKET_MODE);
        // A second node on the same path is refused while the first one listens.
        let again = LocalSocket::bind(&path).err().expect("a live socket is not replaced");
        assert!(again.contains("another process"), "{again}");
        let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
        assert_eq!(leftovers.len(), 1, "only the socket is left: {leftovers:?}");
        drop(socket);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn never_overwrites_a_regular_file() {
        let dir = dir("file");
        let path = dir.join("ctl.sock");
        std::fs::write(&path, b"keep me").expect("file");
        let error = LocalSocket::bind(&path).err().expect("refused");
        assert!(error.contains("not a socket"), "{error}");
        assert_eq!(std::fs::read(&path).expect("still there"), b"keep me");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn removes_its_socket_at_shutdown() {
        let dir = dir("shutdown");
        let path = dir.join("ctl.sock");
        let socket = LocalSocket::bind(&path).expect("binds");
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        socket.serve(Router::new(), shutdown.clone(), &tasks);
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        assert!(!path.exists(), "socket removed at shutdown");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
