//! The two facts Causeway reads out of an X.509 certificate: the subject's
//! CommonName (auth_type = cert) and the signature algorithm (which hash
//! tls-server-end-point channel binding uses). A small DER walk: the
//! certificates have been parsed and verified by webpki before we look.

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// 2.5.4.3 (id-at-commonName).
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// (tbsCertificate contents, signatureAlgorithm contents).
fn certificate(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, rest) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, alg, _) = tlv(rest)?;
    (tag == SEQUENCE).then_some((tbs, alg))
}

/// The signature algorithm's OID (DER contents).
pub fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (_, alg) = certificate(der)?;
    let (tag, oid, _) = tlv(alg)?;
    (tag == OID).then_some(oid)
}

/// The subject's first CommonName.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (tbs, _) = certificate(der)?;
    let mut rest = tbs;
    // [0] EXPLICIT version is optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, mut subject, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, next) = tlv(subject)?;
        subject = next;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (_, atv, next) = tlv(rdn)?;
            rdn = next;
            let (tag, oid, value) = tlv(atv)?;
            if tag == OID && oid == CN_OID {
                let (stag, s, _) = tlv(value)?;
                return decode_string(stag, s);
            }
        }
    }
    None
}

fn decode_string(tag: u8, s: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (taken as
        // UTF-8, which its ASCII subset is).
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(s.to_vec()).ok(),
        // BMPString: UTF-16BE.
        0x1e => {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = s
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        assert_eq!(
            tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((4, &[0xaa][..], &[0xbb][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        assert_eq!(tlv(&long).map(|t| t.1.len()), Some(0x80));
        // Truncated or absurd lengths are refused, never read past the end.
        assert_eq!(tlv(&[0x04, 0x05, 0x00]), None);
        assert_eq!(tlv(&[0x04, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(tlv(&[0x04]), None);
    }

    #[test]
    fn common_name_and_algorithm_of_generated_certificates() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["db.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Causeway tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_common_name(cert.der()).as_deref(), Some("alice"));
        assert_eq!(
            signature_oid(cert.der()),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        // rcgen's default subject has a CommonName of its own.
        assert!(subject_common_name(cert.der()).is_some());
        assert_eq!(
            signature_oid(cert.der()),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03][..])
        );
        assert_eq!(subject_common_name(&cert.der()[..40]), None);
    }
}
