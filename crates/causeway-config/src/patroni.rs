//! `patroni_url` values: `http://host[:port][/]` (Patroni's REST API).

/// The host and port of a Patroni REST API address, or None when it is not
/// `http://host[:port][/]` (https is not supported). Port 8008 (Patroni's
/// default) when none is given; `[::1]` style IPv6 hosts are unbracketed.
pub fn patroni_authority(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        match tail {
            "" => (h, None),
            t => (h, Some(t.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 8008,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::patroni_authority as a;

    #[test]
    fn addresses() {
        assert_eq!(a("http://127.0.0.1:8008"), Some(("127.0.0.1".into(), 8008)));
        assert_eq!(a("http://db1/"), Some(("db1".into(), 8008)));
        assert_eq!(a("http://[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(a("https://db1:8008"), None);
        assert_eq!(a("http://db1:0"), None);
        assert_eq!(a("http://db1:8008/cluster"), None);
        assert_eq!(a("http://:8008"), None);
        assert_eq!(a("db1:8008"), None);
    }
}
