//! A connection that got no login slot (see login_slots.rs): answered
//! properly, briefly, then closed.

use std::sync::Arc;
use std::time::Duration;

use causeway_protocol::sqlstate;

use super::startup;
use crate::app::App;
use crate::client::Client;
use crate::login_slots::{self, Full};

/// Time a connection without a login slot has to say what it wants
/// before it is closed without a reply.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(5);

/// No login slot: the SSLRequest is still answered (so libpq shows the
/// reason) and a cancel request still forwarded, then 53300; within
/// [`REFUSAL_DEADLINE`], and closed at once past the refusal bound.
pub(crate) async fn refuse_no_slot(app: &Arc<App>, mut client: Client, full: Full) {
    let cfg = app.config();
    let setting = match full {
        Full::Total => "client_login_slots",
        Full::Addr => "client_login_slots_per_addr",
    };
    // Logged only for connections that are answered: past the refusal
    // bound a flood would otherwise flood the log too.
    let Some(_refusing) = login_slots::refusing(&app.logins, &cfg) else {
        return;
    };
    if cfg.log_pooler_errors {
        tracing::warn!(client = %client.peer, setting, "too many logins in progress, refusing client");
    }
    let negotiated = tokio::time::timeout(REFUSAL_DEADLINE, startup::negotiate(&mut client, app));
    if let Ok(startup::Outcome::Login(_)) = negotiated.await {
        client
            .fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                &format!("too many logins in progress ({setting})"),
            )
            .await;
    }
}
