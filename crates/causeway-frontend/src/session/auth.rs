//! The Authenticating state: prove the client is who it says, the way
//! PgBouncer does (trust, md5, scram-sha-256, plain against the
//! auth_file's secrets; a client certificate; the unix socket's peer), as
//! [`super::access`] decided. A stored SCRAM verifier is enough: no
//! plaintext. Over TLS, SCRAM-SHA-256-PLUS (tls-server-end-point channel
//! binding) is offered too.

use bytes::BytesMut;
use causeway_net::hba::ClientCert;
use causeway_protocol::auth::messages::{self as m};
use causeway_protocol::auth::{
    md5::verify_md5_response, ScramKeys, ScramServer, ScramVerifier, Secret,
};
use causeway_protocol::{scan::body, sqlstate, HEADER_LEN};

use super::access::{Access, Method};
use crate::client::Client;
use crate::credentials::Credentials;

/// Auth messages are small; anything larger is refused.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;

pub enum Outcome {
    Ok(Credentials),
    /// Refused or gone; an error has been sent when possible.
    Failed,
}

pub async fn authenticate(
    client: &mut Client,
    access: Access,
    user: &str,
    secret: Option<&Secret>,
) -> Outcome {
    let none = Credentials::default();
    // PostgreSQL never accepts an empty password: an empty one in the
    // auth_file is as good as none (the exchange still runs, then fails).
    let known = secret.is_some();
    let secret = secret.filter(|s| !is_empty_password(s, user));
    let result = match check_certificate(client, access.clientcert, user) {
        Err(f) => Err(f),
        Ok(()) => match access.method {
            // As PgBouncer: trust still needs the user to exist (auth_file
            // or auth_query).
            Method::Trust if !known => {
                Err(Failure::Denied("\"trust\" authentication failed".into()))
            }
            Method::Trust => Ok(none),
            Method::Password => cleartext(client, user, secret).await.map(|p| Credentials {
                password: Some(p),
                scram_keys: None,
            }),
            Method::Md5 => match secret {
                // As PgBouncer: md5 switches to SCRAM when the stored secret is SCRAM.
                Some(Secret::Scram(_)) => scram(client, secret).await,
                _ => md5(client, user, secret).await.map(|_| none),
            },
            Method::ScramSha256 => scram(client, secret).await,
            // The certificate was checked above (clientcert = verify-full).
            Method::Cert => Ok(none),
            Method::Peer => match client.stream.unix_peer_user() {
                Some(os_user) if os_user == user => Ok(none),
                Some(_) | None => Err(Failure::Denied(format!(
                    "peer authentication failed for user \"{user}\""
                ))),
            },
        },
    };
    match result {
        Ok(creds) => {
            m::write_auth_ok(&mut client.out);
            Outcome::Ok(creds)
        }
        Err(Failure::Refused(reason)) => {
            tracing::info!(user, client = %client.peer, reason, "client authentication failed");
            client
                .fatal(
                    sqlstate::INVALID_PASSWORD,
                    &format!("password authentication failed for user \"{user}\""),
                )
                .await;
            Outcome::Failed
        }
        Err(Failure::Denied(message)) => {
            tracing::info!(user, client = %client.peer, reason = %message, "client authentication failed");
            client
                .fatal(sqlstate::INVALID_AUTHORIZATION, &message)
                .await;
            Outcome::Failed
        }
        Err(Failure::Protocol(reason)) => {
            client.fatal(sqlstate::PROTOCOL_VIOLATION, &reason).await;
            Outcome::Failed
        }
        Err(Failure::Gone) => Outcome::Failed,
    }
}

/// clientcert=verify-ca: a certificate (verified against
/// client_tls_ca_file during the handshake) must have been presented;
/// verify-full (and `cert`): its CommonName must be the user name.
fn check_certificate(
    client: &Client,
    demand: Option<ClientCert>,
    user: &str,
) -> Result<(), Failure> {
    let Some(demand) = demand else {
        return Ok(());
    };
    let Some(der) = client.stream.peer_certificate() else {
        return Err(Failure::Denied(
            "connection requires a valid client certificate".into(),
        ));
    };
    if demand == ClientCert::VerifyFull {
        let cn = causeway_net::subject_common_name(der);
        if cn.as_deref() != Some(user) {
            tracing::info!(user, client = %client.peer, certificate_cn = ?cn, "certificate CommonName is not the user name");
            return Err(Failure::Denied(format!(
                "certificate authentication failed for user \"{user}\""
            )));
        }
    }
    Ok(())
}

enum Failure {
    /// Wrong password (28P01).
    Refused(&'static str),
    /// Certificate or peer mismatch (28000), with PostgreSQL's message.
    Denied(String),
    Protocol(String),
    Gone,
}

/// Sends what is in `client.out` and reads the client's 'p' message body.
async fn exchange(client: &mut Client) -> Result<BytesMut, Failure> {
    client.flush().await.map_err(|_| Failure::Gone)?;
    loop {
        if client.buf.len() >= HEADER_LEN {
            let tag = client.buf[0];
            let len =
                i32::from_be_bytes([client.buf[1], client.buf[2], client.buf[3], client.buf[4]]);
            if tag != m::PASSWORD_TAG {
                return Err(Failure::Protocol(format!(
                    "expected password response, got message type '{}'",
                    tag as char
                )));
            }
            if len < 4 || len as usize > MAX_AUTH_MESSAGE {
                return Err(Failure::Protocol(format!(
                    "invalid password message length {len}"
                )));
            }
            let total = len as usize + 1;
            if client.buf.len() >= total {
                return Ok(client.buf.split_to(total));
            }
        }
        match client.read_more().await {
            Ok(0) | Err(_) => return Err(Failure::Gone),
            Ok(_) => {}
        }
    }
}

async fn cleartext(
    client: &mut Client,
    user: &str,
    secret: Option<&Secret>,
) -> Result<String, Failure> {
    m::write_auth_cleartext_password(&mut client.out);
    let frame = exchange(client).await?;
    let given =
        m::parse_password_message(body(&frame)).map_err(|e| Failure::Protocol(e.to_string()))?;
    let ok = match secret {
        // An empty password is never accepted (as PostgreSQL).
        _ if given.is_empty() => false,
        Some(Secret::Plain(p)) => constant_eq(p.as_bytes(), given.as_bytes()),
        Some(Secret::Md5(h)) => {
            let mine = causeway_protocol::auth::md5_password_hash(user, given);
            constant_eq(h.as_bytes(), mine.as_bytes())
        }
        Some(Secret::Scram(v)) => {
            ScramVerifier::from_password(given.as_bytes(), v.salt(), v.iterations())
                .is_ok_and(|d| constant_eq(d.stored_key(), v.stored_key()))
        }
        None => false,
    };
    if ok {
        Ok(given.to_string())
    } else {
        Err(Failure::Refused("wrong password or unknown user"))
    }
}

async fn md5(client: &mut Client, user: &str, secret: Option<&Secret>) -> Result<(), Failure> {
    let salt: [u8; 4] = rand::random();
    m::write_auth_md5_password(&mut client.out, salt);
    let frame = exchange(client).await?;
    let given =
        m::parse_password_message(body(&frame)).map_err(|e| Failure::Protocol(e.to_string()))?;
    match secret {
        Some(s) if verify_md5_response(s, user, salt, given) => Ok(()),
        _ => Err(Failure::Refused("wrong password or unknown user")),
    }
}

async fn scram(client: &mut Client, secret: Option<&Secret>) -> Result<Credentials, Failure> {
    // An unknown user still goes through the exchange (against a random
    // verifier) so the reply does not reveal which users exist.
    let mut usable = secret.is_some();
    let mut server = match secret {
        Some(Secret::Plain(p)) => ScramServer::new(super::verifiers::plain(p)),
        // A secret that cannot do SCRAM (an md5 hash) gets the same
        // exchange as an unknown user: refused after it, not before.
        Some(s) => match ScramServer::from_secret(s) {
            Ok(server) => server,
            Err(_) => {
                usable = false;
                ScramServer::new(super::verifiers::unknown())
            }
        },
        None => ScramServer::new(super::verifiers::unknown()),
    };
    // Over TLS, SCRAM-SHA-256-PLUS is offered too, bound to the hash of
    // the certificate this connection's handshake used.
    if let Some(end_point) = client.stream.end_point() {
        server.offer_channel_binding(end_point.0.clone());
    }
    m::write_auth_sasl(&mut client.out, server.mechanisms());
    let frame = exchange(client).await?;
    let (mech, data) = m::parse_sasl_initial_response(body(&frame))
        .map_err(|e| Failure::Protocol(e.to_string()))?;
    server
        .select(mech)
        .map_err(|e| Failure::Protocol(format!("unsupported SASL mechanism {mech:?}: {e}")))?;
    let first = server.handle_client_first(data).map_err(scram_failure)?;
    m::write_auth_sasl_continue(&mut client.out, &first);
    let frame = exchange(client).await?;
    let fin = server
        .handle_client_final(m::parse_sasl_response(body(&frame)))
        .map_err(scram_failure)?;
    if !usable {
        return Err(Failure::Refused(
            "unknown user or secret unusable for SCRAM",
        ));
    }
    m::write_auth_sasl_final(&mut client.out, &fin);
    let scram_keys = match (secret, server.client_key()) {
        (Some(Secret::Scram(v)), Some(client_key)) => Some(ScramKeys {
            client_key,
            server_key: *v.server_key(),
        }),
        _ => None,
    };
    Ok(Credentials {
        password: None,
        scram_keys,
    })
}

fn scram_failure(e: causeway_protocol::auth::ScramError) -> Failure {
    if e.sqlstate() == sqlstate::INVALID_PASSWORD {
        Failure::Refused("wrong password")
    } else {
        Failure::Protocol(format!("SCRAM authentication failed: {e}"))
    }
}

/// An empty password in the auth_file, plain or as its md5 hash.
fn is_empty_password(secret: &Secret, user: &str) -> bool {
    match secret {
        Secret::Plain(p) => p.is_empty(),
        Secret::Md5(h) => constant_eq(
            h.as_bytes(),
            causeway_protocol::auth::md5_password_hash(user, "").as_bytes(),
        ),
        Secret::Scram(_) => false,
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
