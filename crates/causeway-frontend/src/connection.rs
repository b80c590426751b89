//! One client connection from accept to close: a login slot, the login,
//! then the admin console or a session. The one place that knows both.

use std::future::Future;
use std::sync::Arc;

use causeway_config::{secs, Config};
use causeway_net::{PeerAddr, Stream};
use causeway_protocol::sqlstate;

use crate::app::App;
use crate::client::Client;
use crate::session::{self, Login};
use crate::{admin, login_slots};

/// Serves one client connection from accept to close.
///
/// Not itself async, and the client boxed until the session takes it:
/// the task holds a pointer, not the client (and the stream and address
/// it was made from) beside the session's copy.
pub fn serve(app: Arc<App>, stream: Stream, peer: PeerAddr) -> impl Future<Output = ()> + Send {
    serve_client(app, Box::new(Client::new(stream, peer)))
}

async fn serve_client(app: Arc<App>, mut client: Box<Client>) {
    let cfg = app.config();
    let slot = match login_slots::acquire(&app.logins, &cfg, client.peer.ip()) {
        Ok(slot) => slot,
        Err(full) => return Box::pin(session::refuse_no_slot(&app, *client, full)).await,
    };
    // Boxed: the login's state (its timer too) is freed once it is done,
    // not carried in every logged-in client's task.
    let login = Box::pin(timed_login(&app, &cfg, &mut client)).await;
    // Logged in (or refused): the slot goes to the next login.
    drop(slot);
    match login {
        Some(Login::Session(l)) => session::run(app, *client, l).await,
        Some(Login::Admin(role, _permit)) => Box::pin(admin::serve(&app, &mut client, role)).await,
        None => {}
    }
}

/// The login, within client_login_timeout. It borrows the client; it ends
/// before the session takes it.
async fn timed_login(app: &Arc<App>, cfg: &Arc<Config>, client: &mut Client) -> Option<Login> {
    let Some(t) = secs(cfg.client_login_timeout) else {
        return session::login(app, cfg, client).await;
    };
    match tokio::time::timeout(t, session::login(app, cfg, client)).await {
        Ok(login) => login,
        Err(_) => {
            client
                .fatal(sqlstate::PROTOCOL_VIOLATION, "client_login_timeout")
                .await;
            None
        }
    }
}
