//! Which authentication method a login gets: `auth_type`, or with
//! `auth_type = hba` the first matching line of `auth_hba_file` (by
//! connection kind, TLS, address, database and user). A `reject` line, or
//! no matching line, refuses the login with PostgreSQL's message.

use causeway_config::{AuthType, Config};
use causeway_net::hba::{self, ClientCert, Request};
use causeway_protocol::sqlstate;

use crate::app::App;
use crate::client::Client;

/// How to authenticate one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    /// md5, or SCRAM when the stored secret is a SCRAM verifier.
    Md5,
    ScramSha256,
    /// Cleartext password.
    Password,
    /// Client certificate CommonName = user.
    Cert,
    /// Unix socket peer's OS user = user.
    Peer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub method: Method,
    /// A client certificate demanded besides the method.
    pub clientcert: Option<ClientCert>,
}

/// The method for this login, or Err after telling the client why not.
pub async fn decide(
    app: &App,
    cfg: &Config,
    client: &mut Client,
    database: &str,
    user: &str,
) -> Result<Access, ()> {
    let plain = |method| {
        Ok(Access {
            method,
            clientcert: None,
        })
    };
    match cfg.auth_type {
        AuthType::Trust => plain(Method::Trust),
        AuthType::Md5 => plain(Method::Md5),
        AuthType::ScramSha256 => plain(Method::ScramSha256),
        AuthType::Plain => plain(Method::Password),
        AuthType::Cert => Ok(Access {
            method: Method::Cert,
            clientcert: Some(ClientCert::VerifyFull),
        }),
        AuthType::Hba => {
            let req = Request {
                local: client.stream.is_unix(),
                tls: client.stream.is_tls(),
                addr: client.peer.ip(),
                database,
                user,
            };
            let rule = app
                .security
                .hba()
                .and_then(|h| h.rule_for(&req).map(|r| (r.method, r.clientcert, r.line)));
            let Some((m, clientcert, line)) = rule else {
                tracing::info!(client = %client.peer, user, database, "no pg_hba rule matches");
                return refuse(client, "no pg_hba.conf entry", &req).await;
            };
            let method = match m {
                hba::Method::Reject => {
                    tracing::info!(client = %client.peer, user, database, line, "pg_hba rule rejects the connection");
                    return refuse(client, "pg_hba.conf rejects connection", &req).await;
                }
                hba::Method::Trust => Method::Trust,
                hba::Method::Md5 => Method::Md5,
                hba::Method::ScramSha256 => Method::ScramSha256,
                hba::Method::Password => Method::Password,
                hba::Method::Cert => Method::Cert,
                hba::Method::Peer => Method::Peer,
            };
            Ok(Access { method, clientcert })
        }
    }
}

async fn refuse(client: &mut Client, what: &str, r: &Request<'_>) -> Result<Access, ()> {
    let host = r
        .addr
        .map_or_else(|| "[local]".to_string(), |ip| ip.to_string());
    let enc = if r.tls {
        "SSL encryption"
    } else {
        "no encryption"
    };
    client
        .fatal(
            sqlstate::INVALID_AUTHORIZATION,
            &format!(
                "{what} for host \"{host}\", user \"{}\", database \"{}\", {enc}",
                r.user, r.database
            ),
        )
        .await;
    Err(())
}
