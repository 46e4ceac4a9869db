//! The PEM files of a `rediss://` connection: `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE` and
//! `REDIS_CLIENT_KEY_FILE`.
//!
//! Each file is read and parsed once, while the command line is parsed, so a missing,
//! unreadable or malformed file stops startup with a message naming its variable instead of
//! failing every reconnect later with a TLS error, and a renewed certificate takes effect on
//! the next start. Parsing uses the rustls (with ring) that redis-rs connects with, so what
//! passes here is what the connection loads.

use std::fmt;
use std::path::{Path, PathBuf};

use redis::ConnectionAddr;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::{ConfigError, RedisConfig};

/// The contents of a PEM file a variable names, checked to hold what the variable needs.
/// `Debug` shows the path only: the contents may be a private key.
#[derive(Clone)]
pub struct PemFile {
    path: PathBuf,
    contents: Vec<u8>,
}

impl PemFile {
    /// Reads `path`, which must hold one or more X.509 certificates (a CA bundle, or a
    /// certificate followed by its chain).
    pub fn certificates(path: &Path) -> Result<Self, String> {
        let file = Self::read(path)?;
        file.parsed_certificates()?;
        Ok(file)
    }

    /// Reads `path`, which must hold a private key (PKCS#8, PKCS#1 or SEC1) ring can sign with.
    pub fn private_key(path: &Path) -> Result<Self, String> {
        let file = Self::read(path)?;
        provider()
            .key_provider
            .load_private_key(file.parsed_key()?)
            .map_err(|e| format!("the private key cannot be used: {e}"))?;
        Ok(file)
    }

    /// The file it was read from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The PEM text, as read at startup.
    #[must_use]
    pub fn contents(&self) -> &[u8] {
        &self.contents
    }

    fn read(path: &Path) -> Result<Self, String> {
        let contents = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        Ok(Self {
            path: path.to_owned(),
            contents,
        })
    }

    fn parsed_certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let certificates = CertificateDer::pem_slice_iter(&self.contents)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not valid PEM: {e}"))?;
        if certificates.is_empty() {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
        }
        // Adding a certificate to a store parses it as X.509, which the PEM layer does not.
        let mut store = RootCertStore::empty();
        for certificate in &certificates {
            store
                .add(certificate.clone())
                .map_err(|e| format!("holds a certificate that does not parse: {e}"))?;
        }
        Ok(certificates)
    }

    fn parsed_key(&self) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(&self.contents).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----)".to_owned()
            }
            other => format!("not a valid PEM private key: {other}"),
        })
    }
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PemFile").field(&self.path).finish()
    }
}

/// What the TLS files cannot tell alone: they apply to `rediss://` URLs only, a client
/// certificate and its key come together, and the key is the certificate's.
pub(super) fn validate(redis: &RedisConfig) -> Result<(), ConfigError> {
    let set = [
        ("REDIS_CA_FILE", redis.ca_file.is_some()),
        ("REDIS_CLIENT_CERT_FILE", redis.client_cert_file.is_some()),
        ("REDIS_CLIENT_KEY_FILE", redis.client_key_file.is_some()),
    ];
    let is_tls = redis
        .urls
        .iter()
        .any(|node| matches!(node.addr(), ConnectionAddr::TcpTls { .. }));
    if let Some((variable, _)) = set.into_iter().find(|(_, is_set)| *is_set)
        && !is_tls
    {
        return Err(ConfigError {
            variable,
            reason: "applies to TLS connections only, and REDIS_URL does not start with \
                     rediss://: use a rediss:// URL, or unset it"
                .to_owned(),
        });
    }
    let missing = |variable, other| ConfigError {
        variable,
        reason: format!("is not set, but {other} is: set both, or neither"),
    };
    match (&redis.client_cert_file, &redis.client_key_file) {
        (Some(certificate), Some(key)) => check_pair(certificate, key),
        (Some(_), None) => Err(missing("REDIS_CLIENT_KEY_FILE", "REDIS_CLIENT_CERT_FILE")),
        (None, Some(_)) => Err(missing("REDIS_CLIENT_CERT_FILE", "REDIS_CLIENT_KEY_FILE")),
        (None, None) => Ok(()),
    }
}

/// Checks that `key` is the private key of the first certificate in `certificate`, and that
/// rustls can use the certificate, as it will when the first connection presents them.
fn check_pair(certificate: &PemFile, key: &PemFile) -> Result<(), ConfigError> {
    let invalid = |variable, reason: String| ConfigError { variable, reason };
    let chain = certificate
        .parsed_certificates()
        .map_err(|reason| invalid("REDIS_CLIENT_CERT_FILE", reason))?;
    let parsed_key = key
        .parsed_key()
        .map_err(|reason| invalid("REDIS_CLIENT_KEY_FILE", reason))?;
    match CertifiedKey::from_der(chain, parsed_key, &provider()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(invalid(
            "REDIS_CLIENT_KEY_FILE",
            format!(
                "{} is not the private key of the certificate in REDIS_CLIENT_CERT_FILE ({})",
                key.path.display(),
                certificate.path.display()
            ),
        )),
        Err(e) => Err(invalid(
            "REDIS_CLIENT_CERT_FILE",
            format!("the certificate cannot be used: {e}"),
        )),
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use rcgen::{CertificateParams, KeyPair};

    use super::*;
    use crate::config::{Cli, Config};

    /// A self-signed certificate and its key as PEM files, plus another key, in `dir`.
    fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec!["redis".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        (
            write("cert.pem", certificate.pem()),
            write("key.pem", key.serialize_pem()),
            write(
                "other-key.pem",
                KeyPair::generate().unwrap().serialize_pem(),
            ),
        )
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let config = Cli::try_parse_from(["cart-service"].iter().chain(args))
            .map_err(|e| e.to_string())?
            .config;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn a_client_certificate_and_its_key_over_rediss_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = files(dir.path());

        let config = parse(&[
            "--redis-url",
            "rediss://redis:6380",
            "--redis-ca-file",
            cert.to_str().unwrap(),
            "--redis-client-cert-file",
            cert.to_str().unwrap(),
            "--redis-client-key-file",
            key.to_str().unwrap(),
        ])
        .unwrap();

        assert_eq!(config.redis.ca_file.unwrap().path(), cert);
        let key_file = config.redis.client_key_file.unwrap();
        assert_eq!(format!("{key_file:?}"), format!("PemFile({key:?})"));
    }

    #[test]
    fn files_that_hold_the_wrong_thing_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = files(dir.path());
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let missing = dir.path().join("missing.pem");

        for (flag, path, variable, says) in [
            (
                "--redis-ca-file",
                &missing,
                "REDIS_CA_FILE",
                "cannot read it",
            ),
            (
                "--redis-ca-file",
                &garbage,
                "REDIS_CA_FILE",
                "no PEM certificate",
            ),
            (
                "--redis-ca-file",
                &key,
                "REDIS_CA_FILE",
                "no PEM certificate",
            ),
            ("--redis-ca-file", &broken, "REDIS_CA_FILE", "not valid PEM"),
            (
                "--redis-client-cert-file",
                &garbage,
                "REDIS_CLIENT_CERT_FILE",
                "no PEM",
            ),
            (
                "--redis-client-key-file",
                &cert,
                "REDIS_CLIENT_KEY_FILE",
                "no PEM private key",
            ),
        ] {
            let args = [
                "--redis-url",
                "rediss://redis",
                flag,
                path.to_str().unwrap(),
            ];
            let error = parse(&args).unwrap_err();

            assert!(error.contains(&format!("<{variable}>")), "{error}");
            assert!(error.contains(says), "{flag} {}: {error}", path.display());
        }
    }

    #[test]
    fn combinations_that_cannot_work_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, other_key) = files(dir.path());
        let (cert, key, other_key) = (
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            other_key.to_str().unwrap(),
        );
        let ca = ["--redis-ca-file", cert];
        let client_cert = ["--redis-client-cert-file", cert];
        let client_key = ["--redis-client-key-file", key];
        let tls = ["--redis-url", "rediss://redis"];
        let plain = ["--redis-url", "redis://redis"];

        for (args, variable, says) in [
            ([&plain[..], &ca].concat(), "REDIS_CA_FILE", "rediss://"),
            (
                [&plain[..], &client_cert, &client_key].concat(),
                "REDIS_CLIENT_CERT_FILE",
                "rediss://",
            ),
            (
                [&tls[..], &client_cert].concat(),
                "REDIS_CLIENT_KEY_FILE",
                "set both",
            ),
            (
                [&tls[..], &client_key].concat(),
                "REDIS_CLIENT_CERT_FILE",
                "set both",
            ),
            (
                [
                    &tls[..],
                    &client_cert,
                    &["--redis-client-key-file", other_key],
                ]
                .concat(),
                "REDIS_CLIENT_KEY_FILE",
                "is not the private key",
            ),
        ] {
            let error = parse(&args).unwrap_err();

            assert!(
                error.starts_with(&format!("invalid {variable}: ")),
                "{args:?}: {error}"
            );
            assert!(error.contains(says), "{args:?}: {error}");
        }
    }

    #[test]
    fn an_insecure_rediss_url_is_refused() {
        let error = parse(&["--redis-url", "rediss://redis:6380/#insecure"]).unwrap_err();

        assert!(error.contains("<REDIS_URL>"), "{error}");
        assert!(error.contains("REDIS_CA_FILE"), "{error}");
    }
}
