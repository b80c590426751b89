//! tls-server-end-point channel binding (RFC 5929), what SCRAM-SHA-256-PLUS
//! binds to: the hash of the TLS server's certificate, with the hash of
//! the certificate's signature algorithm (SHA-256 for MD5 and SHA-1).

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::der;

/// The channel-binding data of one TLS server certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct EndPoint(pub Vec<u8>);

impl std::fmt::Debug for EndPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EndPoint({} bytes)", self.0.len())
    }
}

/// The name SCRAM uses for this binding type.
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

fn hash_of(oid: &[u8]) -> Option<Hash> {
    if let Some(last) = oid.strip_prefix(RSA) {
        return match last {
            // md5WithRSA, sha1WithRSA: upgraded to SHA-256 by the RFC.
            [0x04] | [0x05] | [0x0b] => Some(Hash::Sha256),
            [0x0c] => Some(Hash::Sha384),
            [0x0d] => Some(Hash::Sha512),
            [0x0e] => Some(Hash::Sha224),
            // RSASSA-PSS names its hash in parameters; not supported.
            _ => None,
        };
    }
    if let Some(last) = oid.strip_prefix(ECDSA) {
        return match last {
            [0x01] => Some(Hash::Sha224),
            [0x02] => Some(Hash::Sha256),
            [0x03] => Some(Hash::Sha384),
            [0x04] => Some(Hash::Sha512),
            _ => None,
        };
    }
    // Ed25519 and others: no hash defined, so no channel binding (as
    // PostgreSQL).
    None
}

impl EndPoint {
    /// From the server certificate (DER). None: its signature algorithm
    /// defines no hash, so channel binding is not offered or used.
    pub fn of_certificate(der: &[u8]) -> Option<EndPoint> {
        let hash = hash_of(der::signature_oid(der)?)?;
        Some(EndPoint(match hash {
            Hash::Sha224 => Sha224::digest(der).to_vec(),
            Hash::Sha256 => Sha256::digest(der).to_vec(),
            Hash::Sha384 => Sha384::digest(der).to_vec(),
            Hash::Sha512 => Sha512::digest(der).to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
    }

    #[test]
    fn hash_follows_the_signature_algorithm() {
        let c = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        let ep = EndPoint::of_certificate(c.der()).unwrap();
        assert_eq!(ep.0, Sha256::digest(c.der()).to_vec());
        let c = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        let ep = EndPoint::of_certificate(c.der()).unwrap();
        assert_eq!(ep.0, Sha384::digest(c.der()).to_vec());
        // Ed25519 defines no hash: no channel binding.
        assert_eq!(
            EndPoint::of_certificate(cert(&rcgen::PKCS_ED25519).der()),
            None
        );
    }

    #[test]
    fn rsa_variants() {
        assert_eq!(hash_of(&[RSA, &[0x05]].concat()), Some(Hash::Sha256));
        assert_eq!(hash_of(&[RSA, &[0x0c]].concat()), Some(Hash::Sha384));
        assert_eq!(hash_of(&[RSA, &[0x0a]].concat()), None);
        assert_eq!(hash_of(b"junk"), None);
    }
}
