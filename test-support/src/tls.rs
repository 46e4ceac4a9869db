//! A private certificate authority for the TLS tests: a CA made with rcgen and the
//! certificates it signs, written as PEM files into a directory the test owns. The CA is in
//! no system store, so a peer trusts it only when told to.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA whose certificate is the PEM file [`Pki::ca`].
#[derive(Debug)]
pub struct Pki {
    /// The CA's certificate, to trust.
    pub ca: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA, its certificate written to `<dir>/<name>-ca.pem`; `name` keeps the files of
    /// two CAs in one directory apart.
    #[must_use]
    pub fn generate(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = common_name(&format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = write(dir, &format!("{name}-ca.pem"), &issuer.pem());
        Self {
            ca,
            issuer,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A certificate for `names` (host names or IP addresses, such as `127.0.0.1`) signed by
    /// this CA, written to `<dir>/<ca name>-<name>.pem` and `...-key.pem`.
    #[must_use]
    pub fn issue(&self, name: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = common_name(name);
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let stem = format!("{}-{name}", self.name);
        Issued {
            cert: write(&self.dir, &format!("{stem}.pem"), &certificate.pem()),
            key: write(&self.dir, &format!("{stem}-key.pem"), &key.serialize_pem()),
        }
    }
}

/// A subject of its own for each certificate: with rcgen's one default subject, a
/// certificate's subject equals its issuer's, and OpenSSL (redis-server) takes it for
/// self-signed and refuses it.
fn common_name(name: &str) -> DistinguishedName {
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
