//! SCRAM channel binding (RFC 5802 section 6, tls-server-end-point of
//! RFC 5929) as the SCRAM client sees it: which gs2 header to send and
//! what `c=` covers. The server side is in `scram_server`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The SASL mechanism with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// What a SCRAM client does about channel binding.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientBinding {
    /// `n`: no TLS, or no usable certificate hash.
    Unsupported,
    /// `y`: over TLS, but the server did not offer SCRAM-SHA-256-PLUS.
    NotOffered,
    /// `p=tls-server-end-point`: bound to the server certificate's hash.
    EndPoint(Vec<u8>),
}

impl std::fmt::Debug for ClientBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBinding::Unsupported => f.write_str("Unsupported"),
            ClientBinding::NotOffered => f.write_str("NotOffered"),
            ClientBinding::EndPoint(d) => write!(f, "EndPoint({} bytes)", d.len()),
        }
    }
}

impl ClientBinding {
    /// As libpq's `channel_binding=prefer`: bind when the server offers it
    /// and the certificate hash is known.
    pub fn choose(tls: bool, end_point: Option<&[u8]>, mechanisms: &[&str]) -> ClientBinding {
        match (tls, end_point) {
            (true, Some(d)) if mechanisms.contains(&SCRAM_SHA_256_PLUS) => {
                ClientBinding::EndPoint(d.to_vec())
            }
            // A 'y' to a server that offers -PLUS would be taken for a
            // downgrade attack: say 'n' when we cannot bind.
            (true, None) => ClientBinding::Unsupported,
            (true, Some(_)) => ClientBinding::NotOffered,
            (false, _) => ClientBinding::Unsupported,
        }
    }

    pub fn mechanism(&self) -> &'static str {
        match self {
            ClientBinding::EndPoint(_) => SCRAM_SHA_256_PLUS,
            _ => super::SCRAM_SHA_256,
        }
    }

    pub fn gs2_header(&self) -> &'static str {
        match self {
            ClientBinding::Unsupported => "n,,",
            ClientBinding::NotOffered => "y,,",
            ClientBinding::EndPoint(_) => "p=tls-server-end-point,,",
        }
    }

    /// The `c=` value: base64 of the gs2 header and the binding data.
    pub fn cbind_attr(&self) -> String {
        let mut input = self.gs2_header().as_bytes().to_vec();
        if let ClientBinding::EndPoint(d) = self {
            input.extend_from_slice(d);
        }
        STANDARD.encode(input)
    }

    /// The same choice in postgres-protocol's terms.
    pub fn to_postgres(&self) -> postgres_protocol::authentication::sasl::ChannelBinding {
        use postgres_protocol::authentication::sasl::ChannelBinding;
        match self {
            ClientBinding::Unsupported => ChannelBinding::unsupported(),
            ClientBinding::NotOffered => ChannelBinding::unrequested(),
            ClientBinding::EndPoint(d) => ChannelBinding::tls_server_end_point(d.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_and_attributes() {
        let plus = [SCRAM_SHA_256_PLUS, "SCRAM-SHA-256"];
        let plain = ["SCRAM-SHA-256"];
        assert_eq!(
            ClientBinding::choose(false, Some(b"h"), &plus),
            ClientBinding::Unsupported
        );
        assert_eq!(
            ClientBinding::choose(true, None, &plus),
            ClientBinding::Unsupported
        );
        assert_eq!(
            ClientBinding::choose(true, Some(b"h"), &plain),
            ClientBinding::NotOffered
        );
        let b = ClientBinding::choose(true, Some(b"h"), &plus);
        assert_eq!(b.mechanism(), SCRAM_SHA_256_PLUS);
        assert_eq!(
            b.cbind_attr(),
            STANDARD.encode(b"p=tls-server-end-point,,h")
        );
        assert_eq!(ClientBinding::Unsupported.cbind_attr(), "biws");
        assert_eq!(ClientBinding::NotOffered.cbind_attr(), "eSws");
    }
}
