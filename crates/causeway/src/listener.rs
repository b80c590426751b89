//! Accepting clients: every `listen_addr` address and the unix socket.

use std::sync::Arc;
use std::time::Duration;

use causeway_config::Config;
use causeway_net::{bind_tcp, bind_unix, listen_addrs, Listener};

use causeway_frontend::app::{App, Phase};
use causeway_frontend::connection;

/// Binds every configured address; any failure stops the start.
pub fn bind_all(config: &Config) -> Result<Vec<Listener>, String> {
    let addrs = listen_addrs(&config.listen_addr, config.listen_port)?;
    let mut out = Vec::with_capacity(addrs.len() + 1);
    for addr in addrs {
        let l = bind_tcp(addr, config.so_reuseport)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        out.push(Listener::Tcp(l));
    }
    if !config.unix_socket_dir.is_empty() {
        out.push(bind_unix(
            &config.unix_socket_dir,
            config.listen_port,
            config.unix_socket_mode.0,
            &config.unix_socket_group,
        )?);
    }
    Ok(out)
}

/// Accepts on every listener until the process stops taking new clients.
pub async fn run(app: Arc<App>, listeners: Vec<Listener>) {
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(app.clone(), l)))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn accept_loop(app: Arc<App>, listener: Listener) {
    let mut phase = app.watch_phase();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tokio::spawn(connection::serve(app.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = phase.changed() => {
                if *phase.borrow() != Phase::Running {
                    let taken = take_queued(&app, &listener).await;
                    tracing::info!(listener = %listener.describe(), queued = taken, "no longer accepting new clients");
                    // Dropping the listener closes it (and removes the unix socket file).
                    return;
                }
            }
        }
    }
}

/// Connections the kernel has completed but not yet handed over: closing
/// the listener would reset them, so they are taken and served like the
/// others (with so_reuseport, new ones go to the other processes once this
/// listener is closed). Returns how many were waiting.
async fn take_queued(app: &Arc<App>, listener: &Listener) -> usize {
    let mut n = 0;
    // Bounded: a burst arriving meanwhile cannot hold the shutdown.
    while n < 4096 {
        // `timeout` polls the accept once before the zero delay expires.
        match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
            Ok(Ok((stream, peer))) => {
                tokio::spawn(connection::serve(app.clone(), stream, peer));
                n += 1;
            }
            _ => break,
        }
    }
    n
}
