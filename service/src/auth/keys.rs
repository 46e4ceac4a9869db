//! The public keys tokens are checked against, read from a PEM file or from a JWK, each
//! bound to the one algorithm it may verify. A token never chooses how it is checked: its
//! `alg` must be its key's, so no `alg: none`, no HMAC with a public key as the secret, and
//! no RSA key used for another RSA scheme.
//!
//! Only RS256, ES256 (P-256) and `EdDSA` (Ed25519) keys are taken; anything else is refused
//! when the key is loaded, with the reason.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A public key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The key in a PEM document: an RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), P-256 or
    /// Ed25519 public key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if pem.contains("PRIVATE KEY") {
            return Err("holds a private key; give the public key that matches it".to_owned());
        }
        let bytes = pem.as_bytes();
        let candidates = [
            (Algorithm::RS256, DecodingKey::from_rsa_pem(bytes)),
            (Algorithm::ES256, DecodingKey::from_ec_pem(bytes)),
            (Algorithm::EdDSA, DecodingKey::from_ed_pem(bytes)),
        ];
        candidates
            .into_iter()
            .find_map(|(alg, key)| Self::checked(alg, key.ok()?).ok())
            .ok_or_else(|| "holds no RSA, P-256 or Ed25519 public key in PEM form".to_owned())
    }

    /// The key a JWK describes. Its algorithm is the JWK's `alg`, or follows from its key
    /// type and curve when `alg` is absent; the two must agree.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, String> {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            return Err("is an encryption key (use: enc)".to_owned());
        }
        let by_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Some(Algorithm::ES256)
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                Some(Algorithm::EdDSA)
            }
            _ => None,
        };
        let named = match jwk.common.key_algorithm {
            None => by_type,
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
            Some(_) => None,
        };
        match (named, by_type) {
            (Some(alg), Some(by_type)) if alg == by_type => {
                let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
                Self::checked(alg, key)
            }
            _ => Err("is not an RS256, ES256 (P-256) or EdDSA (Ed25519) key".to_owned()),
        }
    }

    /// The algorithm this key verifies.
    #[must_use]
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub(super) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// `key` if the crypto backend can build a verifier from it. Building one parses the
    /// key material, which `DecodingKey` alone does not: a broken key is refused when it
    /// is loaded, not on every request.
    fn checked(alg: Algorithm, key: DecodingKey) -> Result<Self, String> {
        match jsonwebtoken::crypto::verify("AA", b"", &key, alg) {
            Ok(_) => Ok(Self { alg, key }),
            Err(error) => Err(format!("is not a valid {alg:?} key: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The Ed25519 public key of RFC 8037, appendix A.2.
    fn rfc8037_key(extra: &serde_json::Value) -> Jwk {
        let mut jwk = json!({"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        jwk.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(jwk).unwrap()
    }

    #[test]
    fn a_jwk_without_alg_gets_the_algorithm_of_its_key_type() {
        let key = VerifyingKey::from_jwk(&rfc8037_key(&json!({}))).unwrap();

        assert_eq!(key.alg(), Algorithm::EdDSA);
    }

    #[test]
    fn a_jwk_whose_alg_contradicts_its_key_type_or_that_encrypts_is_refused() {
        for extra in [
            json!({"alg": "RS256"}),
            json!({"alg": "HS256"}),
            json!({"use": "enc"}),
        ] {
            let refused = VerifyingKey::from_jwk(&rfc8037_key(&extra));

            assert!(refused.is_err(), "{extra} was taken");
        }
    }

    #[test]
    fn a_shared_secret_jwk_is_never_a_verifying_key() {
        let jwk: Jwk =
            serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})).unwrap();

        let error = VerifyingKey::from_jwk(&jwk).unwrap_err();

        assert!(error.contains("RS256, ES256"), "{error}");
    }

    #[test]
    fn a_pem_file_with_a_private_key_or_no_key_is_refused_with_the_reason() {
        let private =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

        let error = VerifyingKey::from_pem(private).unwrap_err();
        assert!(error.contains("private key"), "{error}");
        let error = VerifyingKey::from_pem("not a PEM document").unwrap_err();
        assert!(
            error.contains("no RSA, P-256 or Ed25519 public key"),
            "{error}"
        );
    }
}
