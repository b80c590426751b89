//! Test certificates made on the spot (rcgen): a CA, server certificates
//! for given host names / IP addresses, and client certificates whose
//! CommonName is a user name. PEM files in a directory of the caller's;
//! keys are mode 0600 (libpq and PostgreSQL refuse looser ones).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// A test certificate authority writing into `dir`.
pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA; its certificate goes to `<dir>/<name>-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> Result<Pki, String> {
        let e = |e: rcgen::Error| format!("rcgen: {e}");
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(e)?).map_err(e)?;
        let pki = Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca,
        };
        write(&pki.ca_file(), &pki.ca.pem(), 0o644)?;
        Ok(pki)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    /// A server certificate valid for `names` (DNS names or IP addresses).
    pub fn server(&self, stem: &str, names: &[&str]) -> Result<CertFiles, String> {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(|e| format!("rcgen: {e}"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(stem, params)
    }

    /// A client certificate with CommonName `cn`.
    pub fn client(&self, stem: &str, cn: &str) -> Result<CertFiles, String> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| format!("rcgen: {e}"))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(stem, params)
    }

    fn issue(&self, stem: &str, params: CertificateParams) -> Result<CertFiles, String> {
        let key = KeyPair::generate().map_err(|e| format!("rcgen: {e}"))?;
        let cert = params
            .signed_by(&key, &self.ca)
            .map_err(|e| format!("rcgen: {e}"))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
            der: cert.der().to_vec(),
        };
        write(&files.cert, &cert.pem(), 0o644)?;
        write(&files.key, &key.serialize_pem(), 0o600)?;
        Ok(files)
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}
