//! TLS with the client, during Startup: an SSLRequest answered 'S' and the
//! handshake, PostgreSQL 17's direct TLS (a ClientHello where the first
//! packet's length would be; ALPN `postgresql` required), and refusing
//! plaintext where client_tls_sslmode requires TLS. Unix-socket clients
//! are never offered TLS (as PostgreSQL).

use causeway_net::stats::{Outcome, Side};
use causeway_net::{ClientTls, HANDSHAKES};
use causeway_protocol::sqlstate;
use tokio::io::AsyncWriteExt;

use crate::client::Client;

/// First byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// The handshake failed or the client went away; it has been told when
/// possible.
pub struct Closed;

/// Before the first packet: a client that starts with a TLS ClientHello
/// uses direct TLS negotiation.
pub async fn direct(client: &mut Client, tls: &ClientTls) -> Result<(), Closed> {
    if !tls.enabled() || !client.buf.is_empty() || client.stream.is_tls() {
        return Ok(());
    }
    let Some(tcp) = client.stream.tcp() else {
        return Ok(());
    };
    let mut first = [0u8; 1];
    // Peeked, not read: an ordinary packet stays in the socket for the
    // usual path (which also notices a closed connection).
    match tcp.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE => upgrade(client, tls, true).await,
        _ => Ok(()),
    }
}

/// An SSLRequest: 'S' and the handshake, or 'N' to go on in clear.
pub async fn ssl_request(client: &mut Client, tls: &ClientTls) -> Result<(), Closed> {
    if client.stream.is_tls() {
        client
            .fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "SSLRequest on a connection that is already encrypted",
            )
            .await;
        return Err(Closed);
    }
    if !tls.enabled() || client.stream.is_unix() {
        if client.stream.tcp().is_some() {
            HANDSHAKES.count(Side::Client, Outcome::Disabled);
        }
        return answer(client, b'N').await;
    }
    if !client.buf.is_empty() {
        // Bytes sent after the SSLRequest, before the handshake, would be
        // plaintext anyone could have injected (CVE-2021-23222).
        client
            .fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "received unencrypted data after SSL request",
            )
            .await;
        return Err(Closed);
    }
    answer(client, b'S').await?;
    upgrade(client, tls, false).await
}

/// A GSSENCRequest: never offered.
pub async fn gssenc_request(client: &mut Client) -> Result<(), Closed> {
    answer(client, b'N').await
}

/// After the StartupMessage: true when client_tls_sslmode requires TLS
/// and this TCP client came without it (it has been told).
pub async fn refuse_plaintext(client: &mut Client, tls: &ClientTls) -> bool {
    if !tls.mode.requires() || client.stream.is_tls() || client.stream.is_unix() {
        return false;
    }
    HANDSHAKES.count(Side::Client, Outcome::PlaintextRefused);
    tracing::info!(client = %client.peer, "client without TLS refused (client_tls_sslmode requires TLS)");
    client
        .fatal(sqlstate::INVALID_AUTHORIZATION, "SSL required")
        .await;
    true
}

async fn answer(client: &mut Client, byte: u8) -> Result<(), Closed> {
    client.stream.write_all(&[byte]).await.map_err(|_| Closed)?;
    client.stream.flush().await.map_err(|_| Closed)
}

async fn upgrade(client: &mut Client, tls: &ClientTls, direct: bool) -> Result<(), Closed> {
    let Some(tcp) = client.stream.take_tcp() else {
        return Err(Closed);
    };
    match tls.accept(tcp, direct).await {
        Ok(stream) => {
            client.stream = stream;
            Ok(())
        }
        Err(e) => {
            tracing::info!(client = %client.peer, direct, reason = e.0.as_str(), error = %e.1, "client TLS handshake failed");
            Err(Closed)
        }
    }
}
