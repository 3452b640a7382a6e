//! WebHook: POSTs the broker's events to a web service, as EMQX's `emqx_web_hook` does.
//!
//! [`Webhook::start`] registers an [`EventListener`] on the broker for the events its rules
//! name. On the broker's side the listener only matches the rules and pushes the event (a few
//! reference-count bumps) into a bounded queue; when the queue is full the event is dropped and
//! counted, never waited for. `pool_size` worker tasks encode the JSON bodies ([`body`]) and POST
//! them, retrying failures with exponential backoff. An event goes to the worker chosen by its
//! client id, so the events of one client arrive in order. The response is ignored except for
//! its status (2xx is success).
//!
//! Counters (through the broker's [`MetricsSource`] seam): `webhook.requests.success`,
//! `webhook.requests.failed` (failed attempts, retries included), `webhook.requests.retried`,
//! `webhook.requests.dropped` (events never delivered: the sum of `.dropped.queue_full` and
//! `.dropped.retries_exhausted`) and `webhook.queue.depth`.

pub mod body;
mod rules;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use portico_core::Broker;
use portico_core::hooks::{Event, EventListener, EventMask};
use portico_core::metrics::MetricsSource;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use body::EncodePayload;
pub use rules::{Rule, RuleError, default_rules};

/// `webhook.*` without `enable`: where and how to POST, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// `url`: where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// `headers`: sent with every request (`content-type: application/json` unless set).
    pub headers: Vec<(String, String)>,
    /// `encode_payload`: how message payloads are written.
    pub encode_payload: EncodePayload,
    /// `pool_size`: concurrent requests (worker tasks) at most.
    pub pool_size: usize,
    /// `request_timeout`: one attempt's limit, connecting included.
    pub request_timeout: Duration,
    /// `max_retries`: further attempts after a failure, with exponential backoff.
    pub max_retries: u32,
    /// `queue_capacity`: events waiting at most (all workers); more are dropped.
    pub queue_capacity: usize,
    /// `rules`: which events to forward; empty means [`default_rules`].
    pub rules: Vec<Rule>,
}

impl Default for WebhookSettings {
    /// EMQX's `web.hook.api.url` default and the shipped rule set.
    fn default() -> Self {
        WebhookSettings {
            url: "http://127.0.0.1:8080".to_owned(),
            headers: Vec::new(),
            encode_payload: EncodePayload::Plain,
            pool_size: 8,
            request_timeout: Duration::from_secs(5),
            max_retries: 3,
            queue_capacity: 10_000,
            rules: Vec::new(),
        }
    }
}

/// Why the webhook could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// `webhook.url` is not an absolute `http://` or `https://` URL.
    #[error("webhook.url: {0}")]
    Url(String),
    /// A `webhook.headers` entry HTTP cannot carry.
    #[error("webhook.headers: {0}")]
    Header(String),
    /// The HTTP client could not be built.
    #[error("webhook: cannot build the HTTP client: {0}")]
    Client(String),
}

/// Checks that `url` can be POSTed to; the reason otherwise.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "http" | "https" => Err("the URL has no host".to_owned()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Checks that a header can be sent; the reason otherwise.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("header {name:?}: the value has characters HTTP cannot carry"))?;
    Ok(())
}

/// The webhook's counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Requests answered with a 2xx status.
    pub success: AtomicU64,
    /// Attempts that failed (no connection, timeout, non-2xx status), retries included.
    pub failed: AtomicU64,
    /// Attempts that were retries.
    pub retried: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Events dropped after `max_retries` retries failed.
    pub dropped_retries_exhausted: AtomicU64,
    /// Events waiting in the queue.
    pub depth: AtomicUsize,
}

impl MetricsSource for WebhookStats {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let full = self.dropped_queue_full.load(Ordering::Relaxed);
        let exhausted = self.dropped_retries_exhausted.load(Ordering::Relaxed);
        vec![
            ("webhook.requests.success", self.success.load(Ordering::Relaxed)),
            ("webhook.requests.failed", self.failed.load(Ordering::Relaxed)),
            ("webhook.requests.retried", self.retried.load(Ordering::Relaxed)),
            ("webhook.requests.dropped", full + exhausted),
            ("webhook.requests.dropped.queue_full", full),
            ("webhook.requests.dropped.retries_exhausted", exhausted),
            ("webhook.queue.depth", self.depth.load(Ordering::Relaxed) as u64),
        ]
    }
}

/// The part registered on the broker: matches rules and queues, never blocks.
struct Listener {
    rules: Vec<Rule>,
    interests: EventMask,
    queues: Vec<mpsc::UnboundedSender<Event>>,
    capacity: usize,
    stats: Arc<WebhookStats>,
}

impl EventListener for Listener {
    fn interests(&self) -> EventMask {
        self.interests
    }

    fn on_event(&self, event: &Event) {
        if !self.rules.iter().any(|rule| rule.matches(event)) {
            return;
        }
        // Reserve a slot first so that the bound holds across every worker's queue.
        if self.stats.depth.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let worker = pick_worker(event.client_id(), self.queues.len());
        if self.queues[worker].send(event.clone()).is_err() {
            // The webhook is stopping and the worker gone.
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The worker for a client: FNV-1a of its id, so one client's events stay in order.
fn pick_worker(client_id: &str, workers: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in client_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % workers.max(1) as u64) as usize
}

/// A running webhook.
pub struct Webhook {
    broker: Broker,
    listener: Arc<dyn EventListener>,
    stats: Arc<WebhookStats>,
    stop: CancellationToken,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("workers", &self.workers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Starts the workers and registers on `broker`. Must run inside a tokio runtime.
    pub fn start(settings: WebhookSettings, broker: &Broker) -> Result<Webhook, WebhookError> {
        check_url(&settings.url).map_err(WebhookError::Url)?;
        let rules = if settings.rules.is_empty() {
            default_rules()
        } else {
            settings.rules.clone()
        };
        let interests: EventMask = rules.iter().map(|r| r.event).collect();
        let client = Arc::new(worker::Client::new(&settings)?);
        let stats = Arc::new(WebhookStats::default());
        let stop = CancellationToken::new();
        let pool_size = settings.pool_size.max(1);
        let mut queues = Vec::with_capacity(pool_size);
        let mut workers = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push(tx);
            workers.push(tokio::spawn(worker::run(
                rx,
                client.clone(),
                stats.clone(),
                stop.clone(),
            )));
        }
        let listener: Arc<dyn EventListener> = Arc::new(Listener {
            rules,
            interests,
            queues,
            capacity: settings.queue_capacity.max(1),
            stats: stats.clone(),
        });
        broker.add_metrics_source(stats.clone());
        broker.add_event_listener(listener.clone());
        tracing::info!(url = %settings.url, pool_size, "webhook started");
        Ok(Webhook {
            broker: broker.clone(),
            listener,
            stats,
            stop,
            workers,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// Unregisters from the broker, then gives the workers up to `grace` to POST what is
    /// queued (no retry waits past it); what is left then is dropped and counted.
    pub async fn stop(self, grace: Duration) {
        self.broker.remove_event_listener(&self.listener);
        // The listener (and with it the queues' senders) goes once the broker let go of it.
        drop(self.listener);
        let deadline = tokio::time::Instant::now() + grace;
        self.stop.cancel();
        for mut handle in self.workers {
            if tokio::time::timeout_at(deadline, &mut handle).await.is_err() {
                handle.abort();
            }
        }
        let left = self.stats.depth.swap(0, Ordering::Relaxed);
        if left > 0 {
            self.stats.dropped_queue_full.fetch_add(left as u64, Ordering::Relaxed);
            tracing::warn!(left, "webhook stopped with events still queued; dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_are_checked() {
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("https://example.com").is_ok());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_header("x-token", "abc").is_ok());
        assert!(check_header("bad name", "abc").is_err());
        assert!(check_header("x-token", "a\nb").is_err());
    }

    #[test]
    fn a_client_always_gets_the_same_worker() {
        assert_eq!(pick_worker("c1", 8), pick_worker("c1", 8));
        assert!(pick_worker("anything", 3) < 3);
        assert_eq!(pick_worker("c1", 0), 0);
    }
}
