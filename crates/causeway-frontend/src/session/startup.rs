//! The Startup state: answer SSL/GSSENC requests (TLS in [`super::secure`]),
//! forward cancel requests, and read the StartupMessage into a
//! [`StartupInfo`].

use causeway_protocol::startup::{self, StartupPacket};
use causeway_protocol::{backend, sqlstate};
use tokio::io::AsyncWriteExt;

use super::secure;
use crate::app::App;
use crate::client::Client;

/// What the client asked for at startup.
#[derive(Debug, Clone)]
pub struct StartupInfo {
    pub user: String,
    pub database: String,
    /// Other parameters, `options -c` settings included, in order.
    pub params: Vec<(String, String)>,
}

pub enum Outcome {
    Login(StartupInfo),
    /// Cancel request handled, or the client went away.
    Done,
    /// Refused; an error has been sent.
    Refused,
}

pub async fn negotiate(client: &mut Client, app: &App) -> Outcome {
    let tls = app.security.client_tls();
    if secure::direct(client, &tls).await.is_err() {
        return Outcome::Done;
    }
    loop {
        let len = loop {
            match startup::packet_len(&client.buf) {
                Ok(Some(n)) if client.buf.len() >= n => break n,
                Ok(_) => {}
                Err(e) => return silent_close(client, &e),
            }
            match client.read_more().await {
                Ok(0) | Err(_) => return Outcome::Done,
                Ok(_) => {}
            }
        };
        let packet = client.buf.split_to(len);
        match startup::parse(&packet) {
            Ok(StartupPacket::Ssl) => {
                if secure::ssl_request(client, &tls).await.is_err() {
                    return Outcome::Done;
                }
            }
            Ok(StartupPacket::GssEnc) => {
                // Not offered: 'N' lets libpq go on (in TLS or clear).
                if secure::gssenc_request(client).await.is_err() {
                    return Outcome::Done;
                }
            }
            Ok(StartupPacket::Cancel { pid, secret }) => {
                crate::peers::cancel(app, pid, secret).await;
                return Outcome::Done;
            }
            Ok(StartupPacket::Startup {
                minor,
                params,
                unknown_options,
            }) => {
                if secure::refuse_plaintext(client, &tls).await {
                    return Outcome::Refused;
                }
                if minor > 0 || !unknown_options.is_empty() {
                    backend::write_negotiate_protocol_version(&mut client.out, 0, &unknown_options);
                }
                return match info_from(params) {
                    Ok(info) => Outcome::Login(info),
                    Err((code, msg)) => {
                        client.fatal(code, &msg).await;
                        Outcome::Refused
                    }
                };
            }
            Err(e) => return refuse_packet(client, e).await,
        }
    }
}

/// A first packet PostgreSQL drops without a word (a bad length: a
/// Terminate, TLS or HTTP bytes, a port scanner): the connection is closed
/// without a reply, as PostgreSQL and PgBouncer do; a reply would only
/// confuse the client (node-postgres raises it as an unhandled error).
fn silent_close(client: &Client, e: &causeway_protocol::ProtocolError) -> Outcome {
    tracing::debug!(client = %client.peer, error = %e, "invalid startup packet; closed without a reply");
    Outcome::Refused
}

/// A first packet of the right length that cannot be used: answered as
/// PostgreSQL 15 answers it.
async fn refuse_packet(client: &mut Client, e: causeway_protocol::ProtocolError) -> Outcome {
    use causeway_protocol::ProtocolError;
    match e {
        ProtocolError::UnsupportedVersion { major, minor } => {
            let msg = format!(
                "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
            );
            if major < 3 {
                // A protocol-2 client reads a protocol-2 error: 'E', text, NUL.
                let v2 = format!("EFATAL:  {msg}\n\0");
                let _ = client.stream.write_all(v2.as_bytes()).await;
            } else {
                client.fatal(sqlstate::FEATURE_NOT_SUPPORTED, &msg).await;
            }
        }
        // A CancelRequest of the wrong size is dropped silently.
        ProtocolError::Malformed("CancelRequest") => return silent_close(client, &e),
        _ => {
            client
                .fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    &format!("invalid startup packet: {e}"),
                )
                .await
        }
    }
    Outcome::Refused
}

fn info_from(params: Vec<(&str, &str)>) -> Result<StartupInfo, (&'static str, String)> {
    let mut user = None;
    let mut database = None;
    let mut rest = Vec::new();
    for (k, v) in params {
        match k {
            "user" => user = Some(v.to_string()),
            "database" => database = Some(v.to_string()),
            "replication" if v != "false" && v != "0" && v != "off" && v != "no" => {
                return Err((
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "replication connections are not supported through Causeway; connect to the server directly".into(),
                ))
            }
            "replication" => {}
            "options" => {
                let opts = startup::parse_options(v)
                    .map_err(|_| (sqlstate::PROTOCOL_VIOLATION, format!("invalid options startup parameter: {v:?}")))?;
                rest.extend(opts);
            }
            _ => rest.push((k.to_string(), v.to_string())),
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or((
        sqlstate::INVALID_AUTHORIZATION,
        "no PostgreSQL user name specified in startup packet".to_string(),
    ))?;
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(StartupInfo {
        user,
        database,
        params: rest,
    })
}
