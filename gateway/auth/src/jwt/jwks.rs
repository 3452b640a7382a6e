//! Public keys from a JWKS endpoint (EMQX `use_jwks = true`): fetched at start and every
//! `refresh_interval` by a background task, and early when a token names a `kid` the set does
//! not hold (at most once per [`EARLY_REFRESH_GAP`], so that tokens with made-up key ids cannot
//! flood the endpoint).
//!
//! Only RSA (RS*, PS*) and ECDSA (ES256, ES384) keys are used; symmetric (`oct`) keys in a
//! public key set are skipped. When the endpoint is down or answers something that is not a key
//! set, the last good keys are kept (EMQX drops them after 5 failed refreshes; Portico keeps
//! them until the endpoint answers again). A key set received is authoritative, an empty one
//! included (that is how keys are revoked).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};

/// Least time between two early refreshes (unknown `kid`).
pub const EARLY_REFRESH_GAP: Duration = Duration::from_secs(5);
/// EMQX's floor for `refresh_interval`.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set accepted, in bytes.
const MAX_BODY: usize = 1 << 20;

pub(crate) const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
pub(crate) const EC_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];

/// How the endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// `endpoint`: the URL of the key set.
    pub endpoint: String,
    /// `refresh_interval` (raised to [`MIN_REFRESH_INTERVAL`]).
    pub refresh_interval: Duration,
    /// `ssl.cacertfile`, read: trust only these CAs (PEM). `None`: the platform's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// `ssl.verify = verify_none`: accept any server certificate.
    pub insecure: bool,
    /// Least time between two fetches caused by unknown key ids ([`EARLY_REFRESH_GAP`]; not
    /// configurable in EMQX, settable for tests).
    pub early_refresh_gap: Duration,
}

impl JwksSettings {
    /// Settings for `endpoint` with the defaults: refreshed every 300 s (EMQX's default), the
    /// platform's roots.
    pub fn new(endpoint: impl Into<String>) -> JwksSettings {
        JwksSettings {
            endpoint: endpoint.into(),
            refresh_interval: Duration::from_secs(300),
            ca_pem: None,
            insecure: false,
            early_refresh_gap: EARLY_REFRESH_GAP,
        }
    }
}

/// One usable key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: &'static [Algorithm],
}

/// The keys of a JWKS endpoint, kept fresh. See the module docs.
pub struct Jwks {
    settings: JwksSettings,
    client: reqwest::Client,
    keys: RwLock<Option<Arc<[Key]>>>,
    /// When the last fetch started, to space early refreshes.
    last_fetch: Mutex<Option<Instant>>,
    /// Serialises fetches: an early refresh waits for one under way instead of adding another.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("endpoint", &self.settings.endpoint)
            .field("keys", &self.keys.read().as_ref().map(|k| k.len()))
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A key set with no keys yet; [`start`](Self::start) fetches them.
    pub fn new(mut settings: JwksSettings) -> Result<Arc<Jwks>, String> {
        reqwest::Url::parse(&settings.endpoint).map_err(|e| format!("invalid endpoint: {e}"))?;
        settings.refresh_interval = settings.refresh_interval.max(MIN_REFRESH_INTERVAL);
        // reqwest is built without a crypto provider: use the workspace's (ring). Installing
        // fails only when one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT);
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("ssl.cacertfile: {e}"))?;
            builder = builder.tls_certs_only(certs);
        }
        if settings.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Arc::new(Jwks {
            settings,
            client,
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }))
    }

    /// Fetches the keys now and then every `refresh_interval`, on `runtime`, for as long as
    /// `self` lives.
    pub fn start(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let weak: Weak<Jwks> = Arc::downgrade(self);
        let interval = self.settings.refresh_interval;
        runtime.spawn(async move {
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                if let Err(error) = jwks.refresh().await {
                    tracing::warn!(endpoint = %jwks.settings.endpoint, %error, "JWKS refresh failed; keeping the last keys");
                }
                drop(jwks);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Fetches the key set once; on success it replaces the keys. Returns the number of usable
    /// keys.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one_at_a_time = self.fetching.lock().await;
        *self.last_fetch.lock() = Some(Instant::now());
        let keys = self.fetch().await?;
        let count = keys.len();
        *self.keys.write() = Some(keys.into());
        tracing::debug!(endpoint = %self.settings.endpoint, keys = count, "JWKS refreshed");
        Ok(count)
    }

    /// Refreshes unless one started less than [`EARLY_REFRESH_GAP`] ago; true if it did.
    pub(crate) async fn refresh_early(&self) -> bool {
        {
            let mut last = self.last_fetch.lock();
            if last.is_some_and(|at| at.elapsed() < self.settings.early_refresh_gap) {
                return false;
            }
            // Claimed now, so that concurrent callers do not all refresh.
            *last = Some(Instant::now());
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(endpoint = %self.settings.endpoint, %error, "JWKS refresh failed; keeping the last keys");
        }
        true
    }

    /// True when an early refresh would run now.
    pub(crate) fn may_refresh_early(&self) -> bool {
        self.last_fetch
            .lock()
            .is_none_or(|at| at.elapsed() >= self.settings.early_refresh_gap)
    }

    /// The current keys; `None` before the first successful fetch.
    pub(crate) fn keys(&self) -> Option<Arc<[Key]>> {
        self.keys.read().clone()
    }

    /// Number of usable keys held (0 before the first fetch).
    pub fn len(&self) -> usize {
        self.keys.read().as_ref().map_or(0, |k| k.len())
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let response = self
            .client
            .get(&self.settings.endpoint)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        if response.content_length().is_some_and(|len| len > MAX_BODY as u64) {
            return Err("the key set is too large".to_owned());
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BODY {
            return Err("the key set is too large".to_owned());
        }
        parse_key_set(&body)
    }
}

/// The usable keys of a JWKS document.
pub(crate) fn parse_key_set(body: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA_ALGORITHMS,
            AlgorithmParameters::EllipticCurve(_) => EC_ALGORITHMS,
            // Symmetric keys do not belong in a public set; others are not supported.
            _ => continue,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            }),
            Err(error) => tracing::warn!(kid = ?jwk.common.key_id, %error, "JWKS key skipped"),
        }
    }
    Ok(keys)
}
