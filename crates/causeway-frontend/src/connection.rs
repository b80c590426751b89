//! One client connection from accept to close: a login slot, the login,
//! then the admin console or a session. The one place that knows both.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use causeway_config::{secs, Config};
use causeway_net::{PeerAddr, Stream};
use causeway_protocol::sqlstate;

use crate::app::App;
use crate::client::Client;
use crate::session::{self, Login};
use crate::{admin, login_slots};

/// Serves one client connection from accept to close.
///
/// The task's future is one boxed future: the login (the login slot, its
/// state and timer, the admin console) runs in a box of its own, freed
/// once it is done, and then the session runs in another. tokio allocates
/// a task 128-byte aligned, so every byte of the future shows in every
/// client's task; an async block here also kept its captures and the
/// login's result (~180 bytes) beside the session (Rust keeps a moved-from
/// local's room across a later await).
pub fn serve(app: Arc<App>, stream: Stream, peer: PeerAddr) -> Serve {
    let client = Box::new(Client::new(stream, peer));
    Serve(Step::Login(Box::pin(log_in(app, client))))
}

/// The future of a client's task (see [`serve`]).
pub struct Serve(Step);

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum Step {
    Login(Boxed<Option<Boxed<()>>>),
    Session(Boxed<()>),
    Done,
}

impl Future for Serve {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.0 {
                Step::Login(login) => match login.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(session)) => self.0 = Step::Session(session),
                    Poll::Ready(None) => self.0 = Step::Done,
                },
                Step::Session(session) => {
                    ready!(session.as_mut().poll(cx));
                    self.0 = Step::Done;
                }
                Step::Done => return Poll::Ready(()),
            }
        }
    }
}

/// From accept to the end of the login: Some(the session) when one
/// starts; the admin console and refused logins end here.
async fn log_in(app: Arc<App>, mut client: Box<Client>) -> Option<Boxed<()>> {
    let cfg = app.config();
    let slot = match login_slots::acquire(&app.logins, &cfg, client.peer.ip()) {
        Ok(slot) => slot,
        Err(full) => {
            session::refuse_no_slot(&app, *client, full).await;
            return None;
        }
    };
    let login = timed_login(&app, &cfg, &mut client).await;
    // Logged in (or refused): the slot goes to the next login.
    drop(slot);
    match login {
        Some(Login::Session(l)) => Some(Box::pin(session::run(app, *client, l))),
        Some(Login::Admin(role, _permit)) => {
            Box::pin(admin::serve(&app, &mut client, role)).await;
            None
        }
        None => None,
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
