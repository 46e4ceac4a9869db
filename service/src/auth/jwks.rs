//! The JWKS cache: the key set at `AUTH_JWKS_URL`, fetched at startup, again every
//! `AUTH_JWKS_REFRESH_SECONDS`, and on demand when a token names a `kid` the cache does not
//! hold (the issuer has rotated its keys), at most once per `AUTH_JWKS_MIN_REFRESH_SECONDS`
//! so tokens with made-up `kid`s cannot make the service hammer the endpoint.
//!
//! A failed fetch (endpoint down, bad answer, no usable key) keeps the last good key set:
//! an issuer's outage does not lock every user out. Requests read the set without locking;
//! fetches are serialised, and requests that waited for one look again instead of fetching.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Request, Uri, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::Denied;
use super::keys::VerifyingKey;

/// How long one fetch of the key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read; an identity provider's is a few KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The cached key set and what fetches it.
#[derive(Debug)]
pub struct Jwks {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: ArcSwap<KeySet>,
    /// When the last fetch ended; held while fetching, so fetches never overlap.
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl Jwks {
    /// Starts the cache: a task fetches the set now and every `refresh`, for as long as the
    /// returned `Arc` lives. Must be called inside a Tokio runtime.
    pub fn start(url: Uri, refresh: Duration, min_refresh: Duration) -> Result<Arc<Self>, String> {
        let jwks = Arc::new(Self {
            url,
            client: client()?,
            keys: ArcSwap::from_pointee(KeySet::default()),
            last_fetch: Mutex::new(None),
            min_refresh,
        });
        tokio::spawn(refresh_forever(Arc::downgrade(&jwks), refresh));
        Ok(jwks)
    }

    /// The key a token with `kid` and `alg` names, fetching the set again first when it is
    /// not cached and the last fetch is old enough.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyingKey>, Denied> {
        let asked = Instant::now();
        if let Some(key) = self.keys.load().find(kid, alg) {
            return Ok(key);
        }
        self.refresh_on_demand(asked).await;
        let keys = self.keys.load();
        match keys.find(kid, alg) {
            Some(key) => Ok(key),
            None if !keys.loaded => Err(Denied::KeysUnavailable),
            None if kid.is_some() => Err(Denied::InvalidToken(
                "no key of the issuer's key set has the token's kid".to_owned(),
            )),
            None => Err(Denied::InvalidToken(
                "the token has no kid and the key set has no single key for its alg".to_owned(),
            )),
        }
    }

    async fn refresh_on_demand(&self, asked: Instant) {
        let mut last_fetch = self.last_fetch.lock().await;
        // A fetch that ended after this request asked has already been looked at; one
        // that ended less than the minimum interval ago is recent enough.
        if last_fetch.is_some_and(|at| at >= asked || at.elapsed() < self.min_refresh) {
            return;
        }
        self.fetch_and_store().await;
        *last_fetch = Some(Instant::now());
    }

    async fn refresh(&self) {
        let mut last_fetch = self.last_fetch.lock().await;
        self.fetch_and_store().await;
        *last_fetch = Some(Instant::now());
    }

    async fn fetch_and_store(&self) {
        match self.fetch().await {
            Ok(keys) => {
                let old = self.keys.load();
                if !old.loaded || old.kids() != keys.kids() {
                    tracing::info!(url = %self.url, kids = ?keys.kids(), "JWKS loaded");
                }
                self.keys.store(Arc::new(keys));
            }
            Err(error) => {
                tracing::warn!(url = %self.url, error = %error,
                    "cannot refresh the JWKS; the last good key set stays in use");
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let request = Request::get(self.url.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(
                header::USER_AGENT,
                concat!("cart-service/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            if !response.status().is_success() {
                return Err(format!("the JWKS endpoint answered {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .map_err(|e| {
                    format!("cannot read the key set (at most {MAX_JWKS_BYTES} bytes): {e}")
                })
        };
        let body = tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("no key set within {FETCH_TIMEOUT:?}"))??;
        KeySet::parse(&body)
    }
}

/// The usable keys of one fetched set, by `kid`.
#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<(Option<String>, Arc<VerifyingKey>)>,
    /// False until the first successful fetch.
    loaded: bool,
}

impl KeySet {
    /// Keeps the keys this service can use and skips the others (encryption keys, other
    /// algorithms); a set with none is an error.
    fn parse(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for value in document.keys {
            let jwk: Result<Jwk, String> = serde_json::from_value(value).map_err(|e| e.to_string());
            match jwk.and_then(|jwk| {
                Ok((
                    jwk.common.key_id.clone(),
                    Arc::new(VerifyingKey::from_jwk(&jwk)?),
                ))
            }) {
                Ok(key) => keys.push(key),
                Err(reason) => tracing::debug!(reason = %reason, "JWKS key skipped"),
            }
        }
        if keys.is_empty() {
            return Err("the key set has no RS256, ES256 or EdDSA signing key".to_owned());
        }
        Ok(Self { keys, loaded: true })
    }

    /// The key with `kid`; without a `kid`, the only key for `alg`, if there is one.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerifyingKey>> {
        let found = if let Some(kid) = kid {
            self.keys.iter().find(|(id, _)| id.as_deref() == Some(kid))
        } else {
            let mut for_alg = self.keys.iter().filter(|(_, key)| key.alg() == alg);
            for_alg.next().filter(|_| for_alg.next().is_none())
        };
        found.map(|(_, key)| key.clone())
    }

    fn kids(&self) -> Vec<Option<&str>> {
        self.keys.iter().map(|(kid, _)| kid.as_deref()).collect()
    }
}

/// Fetches the set now and then every `interval`, until the cache is dropped.
async fn refresh_forever(jwks: Weak<Jwks>, interval: Duration) {
    loop {
        let Some(jwks) = jwks.upgrade() else { return };
        jwks.refresh().await;
        drop(jwks);
        tokio::time::sleep(interval).await;
    }
}

/// An HTTP/1 client for http:// and https:// URLs, TLS by rustls over ring with the
/// system's root certificates (`SSL_CERT_FILE` can name others).
fn client() -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An error with its causes, which hyper keeps out of its own message.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
