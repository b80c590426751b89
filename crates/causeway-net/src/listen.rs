//! Where Causeway listens: `listen_addr` (a comma-separated list, `*` for
//! every IPv4 and IPv6 address) on `listen_port`, and a unix socket
//! `<unix_socket_dir>/.s.PGSQL.<port>` with `unix_socket_mode` and
//! `unix_socket_group`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use tokio::net::{TcpListener, UnixListener};

use crate::stream::{unix_socket_path, PeerAddr, Stream};

/// The TCP addresses of `listen_addr` (empty: unix socket only).
pub fn listen_addrs(value: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let found: Vec<SocketAddr> = match item {
            // As before lists existed: the IPv4 loopback only.
            "localhost" => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)],
            "*" => vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            ],
            // An IPv6 literal may come in brackets.
            a => match a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => (a, port)
                    .to_socket_addrs()
                    .map_err(|e| format!("listen_addr {a:?}: {e}"))?
                    .collect(),
            },
        };
        for a in found {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// One listening socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

/// A bound unix socket; the file is removed when this is dropped.
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    port: u16,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener {
    pub async fn accept(&self) -> std::io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), PeerAddr::Tcp(peer)))
            }
            Listener::Unix(u) => {
                let (s, _) = u.listener.accept().await?;
                Ok((
                    Stream::Unix(s),
                    PeerAddr::Unix {
                        path: u.path.clone(),
                        port: u.port,
                    },
                ))
            }
        }
    }

    /// For the log: `127.0.0.1:6432` or `unix:/tmp/.s.PGSQL.6432`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Listener::Unix(u) => format!("unix:{}", u.path.display()),
        }
    }
}

/// Binds one TCP address. An IPv6 socket is IPv6-only, so `*` can bind
/// 0.0.0.0 and :: side by side.
pub fn bind_tcp(addr: SocketAddr, reuseport: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

/// Binds `<dir>/.s.PGSQL.<port>`, replacing a stale socket file (one no
/// process answers on), then applies the mode (e.g. `0o777`) and group.
pub fn bind_unix(dir: &str, port: u16, mode: u32, group: &str) -> Result<Listener, String> {
    let path = unix_socket_path(dir, port);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(format!("{} is in use by another process", path.display()));
        }
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let socket = UnixSocket {
        listener,
        path: path.clone(),
        port,
    };
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("unix_socket_mode on {}: {e}", path.display()))?;
    if !group.is_empty() {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(&path, None, Some(gid))
            .map_err(|e| format!("unix_socket_group {group:?} on {}: {e}", path.display()))?;
    }
    Ok(Listener::Unix(socket))
}

/// A group name (or number) as a gid.
fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(group)
        .map_err(|_| format!("unix_socket_group {group:?}: invalid name"))?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is read
    // at once, before any other call that could reuse its buffer.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() {
        return Err(format!("unix_socket_group {group:?}: no such group"));
    }
    // SAFETY: non-null pointer returned by getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// so_reuseport: a second process can bind the same address, on IPv4
    /// and on IPv6 (where the host has ::1); without it, it cannot.
    #[tokio::test]
    async fn reuseport_shares_the_port_on_ipv4_and_ipv6() {
        for ip in ["127.0.0.1", "::1"] {
            let any: SocketAddr = SocketAddr::new(ip.parse().unwrap(), 0);
            let first = match bind_tcp(any, true) {
                Ok(l) => l,
                Err(e) if ip == "::1" => {
                    eprintln!("no IPv6 loopback here ({e}): IPv6 half skipped");
                    continue;
                }
                Err(e) => panic!("bind {any}: {e}"),
            };
            let addr = first.local_addr().unwrap();
            let second = bind_tcp(addr, true).expect("second bind with so_reuseport");
            assert_eq!(second.local_addr().unwrap(), addr);
            assert!(
                bind_tcp(addr, false).is_err(),
                "{addr}: bound without so_reuseport"
            );
        }
    }

    #[test]
    fn listen_addr_lists() {
        let v = listen_addrs("127.0.0.1, ::1,127.0.0.1", 6432).unwrap();
        assert_eq!(
            v,
            vec![
                "127.0.0.1:6432".parse().unwrap(),
                "[::1]:6432".parse().unwrap()
            ]
        );
        let v = listen_addrs("*", 1).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|a| a.ip().is_unspecified()));
        assert!(listen_addrs("", 1).unwrap().is_empty());
        assert_eq!(listen_addrs("[::1]", 5).unwrap()[0].port(), 5);
        assert!(listen_addrs("localhost", 5)
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn unix_socket_mode_stale_file_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let path = unix_socket_path(d, 7777);
        // A stale file (nobody listening) is replaced.
        std::fs::write(&path, "").unwrap();
        let l = bind_unix(d, 7777, 0o700, "").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let m = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o700);
        // A live one is not.
        let e = bind_unix(d, 7777, 0o700, "").err().unwrap();
        assert!(e.contains("in use"), "{e}");
        let c = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        assert!(s.is_unix());
        assert_eq!(peer.port(), 7777);
        assert_eq!(peer.host_text(), "unix");
        drop((c, s));
        drop(l);
        assert!(!path.exists(), "socket file removed on drop");
        assert!(bind_unix(d, 7777, 0o777, "no-such-group-x").is_err());
    }
}
