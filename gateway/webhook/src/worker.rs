//! The worker tasks: encode, POST, retry with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use portico_core::hooks::Event;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::body::{self, EncodePayload};
use crate::{WebhookError, WebhookSettings, WebhookStats};

/// Wait before the first retry; doubled for each further one.
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP side, shared by the workers.
pub(crate) struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    encode_payload: EncodePayload,
    max_retries: u32,
}

impl Client {
    pub(crate) fn new(settings: &WebhookSettings) -> Result<Client, WebhookError> {
        // reqwest is built without a crypto provider of its own: it takes the process default,
        // ring, as the listeners do. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.pool_size.max(1))
            .pool_idle_timeout(IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .connect_timeout(settings.request_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let url =
            reqwest::Url::parse(&settings.url).map_err(|e| WebhookError::Url(format!("{:?}: {e}", settings.url)))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &settings.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| WebhookError::Header(format!("{name:?} is not a header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| WebhookError::Header(format!("{name:?}: the value has characters HTTP cannot carry")))?;
            headers.insert(header, value);
        }
        Ok(Client {
            http,
            url,
            headers,
            encode_payload: settings.encode_payload,
            max_retries: settings.max_retries,
        })
    }

    /// One POST; the reason when it did not get a 2xx answer.
    async fn post(&self, body: &[u8]) -> Result<(), String> {
        let response = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP status {status}"))
        }
    }

    /// POSTs `event`, retrying failures until `max_retries` (or until the webhook stops).
    async fn deliver(&self, event: &Event, stats: &WebhookStats, stop: &CancellationToken) {
        let body = match serde_json::to_vec(&body::encode(event, self.encode_payload)) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, event = %event.kind(), "webhook: cannot encode an event; dropped");
                stats.dropped_retries_exhausted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut attempt = 0u32;
        loop {
            match self.post(&body).await {
                Ok(()) => {
                    stats.success.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(why) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    if attempt >= self.max_retries || stop.is_cancelled() {
                        tracing::warn!(url = %self.url, event = %event.kind(), attempts = attempt + 1, %why,
                            "webhook: giving up on an event");
                        stats.dropped_retries_exhausted.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    tracing::debug!(url = %self.url, event = %event.kind(), attempt, %why, "webhook: request failed; retrying");
                    let wait = RETRY_BASE.saturating_mul(1 << attempt.min(16)).min(RETRY_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => {}
                    }
                    attempt += 1;
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One worker: takes its queue's events in order until every sender is gone.
pub(crate) async fn run(
    mut queue: mpsc::UnboundedReceiver<Event>,
    client: Arc<Client>,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
) {
    while let Some(event) = queue.recv().await {
        stats.depth.fetch_sub(1, Ordering::Relaxed);
        client.deliver(&event, &stats, &stop).await;
    }
}
