//! One client connection from accept to close: a login slot, the login,
//! then the admin console or a session. The one place that knows both.

use std::sync::Arc;

use causeway_config::secs;
use causeway_net::{PeerAddr, Stream};
use causeway_protocol::sqlstate;

use crate::app::App;
use crate::client::Client;
use crate::session::{self, Login};
use crate::{admin, login_slots};

/// Serves one client connection from accept to close.
pub async fn serve(app: Arc<App>, stream: Stream, peer: PeerAddr) {
    let cfg = app.config();
    let mut client = Client::new(stream, peer);
    let slot = match login_slots::acquire(&app.logins, &cfg, client.peer.ip()) {
        Ok(slot) => slot,
        Err(full) => return session::refuse_no_slot(&app, client, full).await,
    };
    let login = session::login(&app, &cfg, &mut client);
    // The login future borrows the client; it ends before the session takes it.
    let login = match secs(cfg.client_login_timeout) {
        Some(t) => match tokio::time::timeout(t, login).await {
            Ok(s) => s,
            Err(_) => {
                client
                    .fatal(sqlstate::PROTOCOL_VIOLATION, "client_login_timeout")
                    .await;
                return;
            }
        },
        None => login.await,
    };
    // Logged in (or refused): the slot goes to the next login.
    drop(slot);
    match login {
        Some(Login::Session(l)) => session::run(app, client, l).await,
        Some(Login::Admin(role, _permit)) => admin::serve(&app, &mut client, role).await,
        None => {}
    }
}
