//! Bearer-token authentication of the cart routes, on when `AUTH_MODE=jwt`.
//!
//! A request passes when its bearer token is a JWT signed by a trusted key (the one in
//! `AUTH_PUBLIC_KEY_FILE`, or one of the [`jwks`] key set), names the configured issuer
//! and audience, is inside its `exp`/`nbf` window give or take the leeway, and carries the
//! user claim equal to the cart's `{user_id}`. The `jsonwebtoken` crate (its `RustCrypto` backend)
//! does the verification; this module picks the key and says why a token was refused.

mod jwks;
mod keys;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::config::{AuthConfig, AuthMode, ConfigError};

pub use keys::VerifyingKey;

/// Why a request was refused; `crate::error` turns each into its HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401 without an error code, as RFC 6750 asks).
    #[error("the request has no bearer token")]
    Missing,
    /// A token that does not verify (401, `invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    /// A valid token for another user (403).
    #[error("{0}")]
    WrongUser(String),
    /// The JWKS has never been fetched, so no token can be checked yet (503).
    #[error("the token signing keys are not available yet; retry shortly")]
    KeysUnavailable,
}

/// Checks the tokens of the cart routes.
#[derive(Debug)]
pub struct Authenticator {
    keys: Keys,
    /// One validation per accepted algorithm, so a request only reads them.
    validations: Vec<Validation>,
    user_claim: String,
}

#[derive(Debug)]
enum Keys {
    File(Arc<VerifyingKey>),
    Jwks(Arc<jwks::Jwks>),
}

impl Authenticator {
    /// The authenticator `config` describes: none when `AUTH_MODE` is `none`. Reads the
    /// key file, or starts the JWKS cache (which needs a Tokio runtime).
    pub fn from_config(config: &AuthConfig) -> Result<Option<Self>, ConfigError> {
        if config.mode == AuthMode::None {
            return Ok(None);
        }
        let keys = match (&config.public_key_file, &config.jwks_url) {
            (Some(path), _) => {
                let invalid = |reason: String| ConfigError {
                    variable: "AUTH_PUBLIC_KEY_FILE",
                    reason: format!("{}: {reason}", path.display()),
                };
                let pem = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
                Keys::File(Arc::new(VerifyingKey::from_pem(&pem).map_err(invalid)?))
            }
            (None, Some(url)) => Keys::Jwks(
                jwks::Jwks::start(url.clone(), config.jwks_refresh, config.jwks_min_refresh)
                    .map_err(|reason| ConfigError {
                        variable: "AUTH_JWKS_URL",
                        reason,
                    })?,
            ),
            (None, None) => {
                return Err(ConfigError {
                    variable: "AUTH_JWKS_URL",
                    reason: "or AUTH_PUBLIC_KEY_FILE must be set when AUTH_MODE is jwt".into(),
                });
            }
        };
        let validations = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| validation(config, alg))
            .collect();
        Ok(Some(Self {
            keys,
            validations,
            user_claim: config.user_claim.clone(),
        }))
    }

    /// Passes when `token` verifies and its user claim equals `user_id`.
    pub async fn authorize(&self, token: &str, user_id: Option<&str>) -> Result<(), Denied> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Denied::InvalidToken("the bearer token is not a JWT".to_owned()))?;
        let key = match &self.keys {
            Keys::File(key) => key.clone(),
            Keys::Jwks(jwks) => jwks.key(header.kid.as_deref(), header.alg).await?,
        };
        let validation = self
            .validations
            .iter()
            .find(|v| v.algorithms == [key.alg()])
            .ok_or_else(|| Denied::InvalidToken("the token's key has no validation".to_owned()))?;
        let claims = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(
            token,
            key.decoding_key(),
            validation,
        )
        .map_err(|e| Denied::InvalidToken(reason(e.kind())))?
        .claims;

        let claim = &self.user_claim;
        let subject = match claims.get(claim) {
            Some(serde_json::Value::String(value)) => Some(value.clone()),
            Some(serde_json::Value::Number(value)) => Some(value.to_string()),
            _ => None,
        };
        match (subject, user_id) {
            (Some(subject), Some(user_id)) if subject == user_id => Ok(()),
            (None, _) => Err(Denied::WrongUser(format!(
                "the token has no usable {claim} claim"
            ))),
            _ => Err(Denied::WrongUser(format!(
                "the token's {claim} claim is not this cart's user_id"
            ))),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Denied> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Denied::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(Denied::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denied::Missing);
    }
    match token.trim() {
        "" => Err(Denied::InvalidToken("the bearer token is empty".to_owned())),
        token => Ok(token),
    }
}

/// What a token of `alg` must satisfy: a signature by its key, `exp` (and `nbf` when
/// present) within the leeway, the issuer and the audience.
fn validation(config: &AuthConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
    }
    if let Some(audience) = &config.audience {
        validation.set_audience(&[audience]);
    }
    validation
}

/// The `error_description` for a token `jsonwebtoken` refused: plain words, no quotes.
fn reason(kind: &ErrorKind) -> String {
    let reason = match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "the token signature does not verify",
        ErrorKind::InvalidIssuer => "the token issuer (iss) is not accepted",
        ErrorKind::InvalidAudience => "the token audience (aud) is not accepted",
        ErrorKind::InvalidAlgorithm => "the token alg is not the one of its key",
        ErrorKind::MissingRequiredClaim(claim) => return format!("the token has no {claim} claim"),
        _ => "the token is malformed",
    };
    reason.to_owned()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use http::HeaderValue;

    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let headers = with_authorization(value);

            assert_eq!(bearer_token(&headers).unwrap(), "abc.def.ghi", "{value}");
        }
    }

    #[test]
    fn another_scheme_or_no_header_is_no_token_and_an_empty_one_is_invalid() {
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(Denied::Missing)
        ));
        let basic = with_authorization("Basic dXNlcjpwdw==");
        assert!(matches!(bearer_token(&basic), Err(Denied::Missing)));
        let empty = with_authorization("Bearer  ");
        assert!(matches!(bearer_token(&empty), Err(Denied::InvalidToken(_))));
    }

    #[test]
    fn an_unreadable_key_file_names_the_variable_and_the_file() {
        let config = crate::config::Cli::parse_from([
            "cart-service",
            "--auth-mode=jwt",
            "--auth-public-key-file=/nonexistent/key.pem",
            "--auth-issuer=https://issuer.test/",
            "--auth-audience=cart-service",
        ])
        .config;

        let error = Authenticator::from_config(&config.auth)
            .unwrap_err()
            .to_string();

        assert!(
            error.starts_with("invalid AUTH_PUBLIC_KEY_FILE: /nonexistent/key.pem"),
            "{error}"
        );
    }
}
