//! The token issuer of the `get-auth` scenario: a fresh Ed25519 key for every run (so no
//! key is ever committed or reused), its public half in the PEM file the service's
//! `AUTH_PUBLIC_KEY_FILE` names, and `EdDSA` tokens signed with it. `EdDSA` because it is
//! the cheapest of the algorithms the service verifies (`docs/performance.md`), so the
//! scenario shows the least that authentication costs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// The issuer (`iss`) the tokens name and the service is told to require.
pub const ISSUER: &str = "cargo-xtask-bench";
/// The audience (`aud`) the tokens name and the service is told to require.
pub const AUDIENCE: &str = "cart-service";
/// How long a token is valid: they are signed right before the scenario's service
/// starts, and its points take minutes.
const LIFETIME_SECONDS: u64 = 3600;

/// A signing key made for one run.
pub struct Issuer {
    signing: EncodingKey,
    public_pem: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuer(Ed25519, <key not shown>)")
    }
}

impl Issuer {
    /// A new Ed25519 key from the operating system's random number generator.
    pub fn generate() -> anyhow::Result<Self> {
        let mut secret = [0_u8; 32];
        getrandom::fill(&mut secret).map_err(|e| {
            anyhow::anyhow!("cannot read the system's random number generator: {e}")
        })?;
        let key = SigningKey::from_bytes(&secret);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("cannot encode the bench's Ed25519 key: {e}"))?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode the bench's Ed25519 public key: {e}"))?;
        Ok(Self {
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            public_pem,
        })
    }

    /// Writes the public key, as PEM, to [`public_key_path`] in `dir`.
    pub fn write_public_key(&self, dir: &Path) -> anyhow::Result<()> {
        let path = public_key_path(dir);
        std::fs::write(&path, &self.public_pem)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// A token for `user`: `sub` the user, the bench's issuer and audience, valid for an
    /// hour from now.
    pub fn token(&self, user: &str) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "sub": user,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + LIFETIME_SECONDS,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.signing)
            .with_context(|| format!("cannot sign a token for {user}"))
    }
}

/// Where a run keeps its public key: the file `AUTH_PUBLIC_KEY_FILE` names.
pub fn public_key_path(dir: &Path) -> PathBuf {
    dir.join("jwt-public-key.pem")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use std::collections::HashMap;

    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::Value;

    use super::*;

    #[test]
    fn tokens_verify_with_the_public_key_file_as_the_service_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Issuer::generate().unwrap();
        issuer.write_public_key(dir.path()).unwrap();

        let token = issuer.token("g-7").unwrap();

        let pem = std::fs::read(public_key_path(dir.path())).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let claims = jsonwebtoken::decode::<HashMap<String, Value>>(
            &token,
            &DecodingKey::from_ed_pem(&pem).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "g-7");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
    }

    #[test]
    fn every_run_gets_a_key_of_its_own() {
        let first = Issuer::generate().unwrap();
        let second = Issuer::generate().unwrap();

        assert_ne!(first.public_pem, second.public_pem);
        assert!(first.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
