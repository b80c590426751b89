//! PgBouncer's peering: several instances behind one address (a TCP load
//! balancer, or one port shared with so_reuseport). A CancelRequest comes
//! on its own connection and may land on any instance; the key names the
//! instance that handed it out (cancel.rs), and the request is sent there.

use std::time::Duration;

use causeway_config::{Config, PeerConfig};
use causeway_net::{unix_socket_path, PeerAddr};
use causeway_pool::CancelTarget;

use crate::app::App;
use crate::cancel::CancelRoute;

/// Resolving, connecting and handing over one forwarded cancel.
const FORWARD_LIMIT: Duration = Duration::from_secs(5);

/// Acts on a CancelRequest: cancels this instance's query, or forwards the
/// request to the peer that owns the key. Errors are logged, never told
/// (a CancelRequest gets no reply).
pub async fn cancel(app: &App, pid: i32, secret: &[u8]) {
    let cfg = app.config();
    match app.cancels.route(cfg.peer_id, pid, secret) {
        CancelRoute::Here(Some(target)) => {
            if let Err(e) = causeway_pool::forward_cancel(&target).await {
                tracing::warn!(error = %e, "forwarding cancel request failed");
            }
        }
        CancelRoute::Here(None) => {}
        CancelRoute::Peer { id, pid, secret } => {
            match tokio::time::timeout(FORWARD_LIMIT, to_peer(&cfg, id, pid, &secret)).await {
                Ok(Ok(())) => tracing::debug!(peer = id, "cancel request forwarded to peer"),
                Ok(Err(e)) => {
                    tracing::warn!(peer = id, error = %e, "cannot forward cancel request to peer")
                }
                Err(_) => tracing::warn!(peer = id, "forwarding cancel request to peer timed out"),
            }
        }
        CancelRoute::Spent => {
            tracing::warn!(
                peer = cfg.peer_id,
                "cancel request for another peer arrived already forwarded: dropped (is [peers] the same on every instance?)"
            )
        }
    }
}

async fn to_peer(cfg: &Config, id: u16, pid: i32, secret: &[u8; 4]) -> Result<(), String> {
    let peer = cfg
        .peers
        .get(&id.to_string())
        .ok_or_else(|| format!("no [peers] entry {id}"))?;
    let target = CancelTarget::new(address(peer).await?, pid, secret.to_vec());
    causeway_pool::forward_cancel(&target)
        .await
        .map_err(|e| e.to_string())
}

/// A peer's address: its unix socket in a directory, or host and port.
async fn address(peer: &PeerConfig) -> Result<PeerAddr, String> {
    if peer.host.starts_with('/') {
        return Ok(PeerAddr::Unix {
            path: unix_socket_path(&peer.host, peer.port),
            port: peer.port,
        });
    }
    tokio::net::lookup_host((peer.host.as_str(), peer.port))
        .await
        .map_err(|e| format!("{}: {e}", peer.host))?
        .next()
        .map(PeerAddr::Tcp)
        .ok_or_else(|| format!("{}: no address", peer.host))
}
