//! Real tokens for the authentication tests and benches: RSA, P-256 and Ed25519 keys
//! generated on the spot ([`TestKey`]), tokens signed with them, and a real HTTP server
//! that serves their JWKS and can rotate it or fail ([`JwksServer`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cart_service::config::{AuthMode, Config};
use ed25519_dalek::rand_core::UnwrapErr;
use getrandom::SysRng;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use serde_json::{Value, json};

/// The issuer every test token names.
pub const ISSUER: &str = "https://issuer.test/";
/// The audience every test token names.
pub const AUDIENCE: &str = "cart-service";

/// A signing key made for one test, with its public half as a JWK and as PEM.
#[derive(Clone)]
pub struct TestKey {
    /// The `kid` of its JWK and of the tokens it signs.
    pub kid: String,
    alg: Algorithm,
    signing: EncodingKey,
    jwk: Value,
    public_pem: String,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({} {:?})", self.kid, self.alg)
    }
}

impl TestKey {
    /// A new 2048-bit RSA key, for RS256.
    #[must_use]
    pub fn rsa(kid: &str) -> Self {
        let private = rsa::PrivateKey::new(&mut SysRng, 2048).expect("generate an RSA key");
        let der = private.to_pkcs1_der().expect("encode the RSA key");
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the RSA public key");
        Self::new(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(der.as_bytes()),
            public_pem,
        )
    }

    /// A new P-256 key, for ES256.
    #[must_use]
    pub fn ec(kid: &str) -> Self {
        let private = p256::ecdsa::SigningKey::generate_from_rng(&mut UnwrapErr(SysRng));
        let der = private.to_pkcs8_der().expect("encode the P-256 key");
        let public_pem = private
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the P-256 public key");
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(der.as_bytes()),
            public_pem,
        )
    }

    /// A new Ed25519 key, for `EdDSA`.
    #[must_use]
    pub fn ed(kid: &str) -> Self {
        let private = ed25519_dalek::SigningKey::generate(&mut UnwrapErr(SysRng));
        let der = private.to_pkcs8_der().expect("encode the Ed25519 key");
        let public_pem = private
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the Ed25519 public key");
        Self::new(
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(der.as_bytes()),
            public_pem,
        )
    }

    fn new(kid: &str, alg: Algorithm, signing: EncodingKey, public_pem: String) -> Self {
        let public = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(public_pem.as_bytes()),
            Algorithm::ES256 => DecodingKey::from_ec_pem(public_pem.as_bytes()),
            _ => DecodingKey::from_ed_pem(public_pem.as_bytes()),
        }
        .expect("read the public key back");
        let mut jwk =
            Jwk::from_decoding_key(&public, Some(alg)).expect("describe the key as a JWK");
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            signing,
            jwk: serde_json::to_value(jwk).expect("serialise the JWK"),
            public_pem,
        }
    }

    /// A token with `claims`, signed by this key, its header naming the key's `kid`.
    #[must_use]
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).expect("sign the token")
    }

    /// The public key as a JWK.
    #[must_use]
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key as a PEM document (`PUBLIC KEY`).
    #[must_use]
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
}

/// Claims the test service accepts for `user`: its issuer and audience, valid for an hour.
#[must_use]
pub fn claims(user: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600})
}

/// Turns on `AUTH_MODE=jwt` with the test issuer and audience; the caller sets the key source.
pub fn enable_jwt(config: &mut Config) {
    config.auth.mode = AuthMode::Jwt;
    config.auth.issuer = Some(ISSUER.to_owned());
    config.auth.audience = Some(AUDIENCE.to_owned());
}

/// A JWKS endpoint on a free loopback port, serving the keys it was last given at
/// `/jwks.json`; stops on drop.
#[derive(Debug)]
pub struct JwksServer {
    /// The key set's URL.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    keys: Mutex<Vec<Value>>,
    failing: AtomicBool,
    fetches: AtomicUsize,
}

impl JwksServer {
    /// Serves `keys`.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind a port for the JWKS server");
        let url = format!(
            "http://{}/jwks.json",
            listener.local_addr().expect("local address")
        );
        let router = axum::Router::new()
            .route("/jwks.json", axum::routing::get(serve))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("JWKS server runs");
        });
        let server = Self { url, shared, task };
        server.set_keys(keys);
        server
    }

    /// From now on serves `keys` instead: a rotation.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self
            .shared
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            keys.iter().map(|key| key.jwk().clone()).collect();
    }

    /// While `failing`, answers 500 instead of the key set.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the key set has been asked for.
    #[must_use]
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    if shared.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let keys = shared
        .keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Json(json!({ "keys": keys })).into_response()
}
