//! Deliberately slow work (memory-hard and iterated password hashes) off the connection
//! threads: on tokio's blocking pool, at most one job per core at a time, so that a storm of
//! CONNECTs queues here instead of starving every connection's I/O.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

use crate::chain::BoxFuture;

/// One permit per core: hashing faster than the cores can is impossible anyway, and more
/// threads would only add memory (argon2 takes 19 MiB per hash).
static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

/// Runs `job` on the blocking pool when a permit is free; `failed` if the job panicked.
pub fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static, failed: T) -> BoxFuture<T> {
    Box::pin(async move {
        let Ok(_permit) = PERMITS.clone().acquire_owned().await else {
            return failed;
        };
        match tokio::task::spawn_blocking(job).await {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, "a password check failed on the blocking pool");
                failed
            }
        }
    })
}
