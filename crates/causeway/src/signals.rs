//! PgBouncer's signals: SIGHUP reload; SIGTERM stop accepting and wait for
//! clients to leave; SIGINT stop accepting and close each client once its
//! server is released; a second SIGTERM/SIGINT, or SIGQUIT, stops at once.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::app::{App, Phase};

pub async fn run(app: Arc<App>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    loop {
        tokio::select! {
            _ = hup.recv() => match app.reload() {
                Ok(()) => tracing::info!("configuration reloaded (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "reload refused; the previous configuration stays in force"),
            },
            _ = term.recv() => escalate(&app, Phase::NoAccept, "SIGTERM"),
            _ = int.recv() => escalate(&app, Phase::Draining, "SIGINT"),
            _ = quit.recv() => escalate(&app, Phase::Stopping, "SIGQUIT"),
        }
    }
}

fn escalate(app: &App, first: Phase, name: &str) {
    let next = if app.phase() == Phase::Running {
        first
    } else {
        Phase::Stopping
    };
    tracing::info!(signal = name, phase = ?next, "shutdown requested");
    app.set_phase(next);
}
