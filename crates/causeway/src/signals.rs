//! PgBouncer's signals: SIGHUP reload; SIGTERM stop accepting and wait for
//! clients to leave (with so_reuseport, transaction-mode clients are closed
//! at their next transaction boundary: a rolling restart); SIGINT stop accepting and close each client once its
//! server is released; a second SIGTERM/SIGINT, or SIGQUIT, stops at once;
//! SIGUSR1 pauses every database and SIGUSR2 resumes them (the admin
//! console's PAUSE and RESUME without a database name).

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use causeway_frontend::admin;
use causeway_frontend::app::{App, Phase};

pub async fn run(app: Arc<App>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        tokio::select! {
            _ = hup.recv() => match app.reload() {
                Ok(()) => tracing::info!("configuration reloaded (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "reload refused; the previous configuration stays in force"),
            },
            _ = term.recv() => escalate(&app, Phase::NoAccept, "SIGTERM"),
            _ = int.recv() => escalate(&app, Phase::Draining, "SIGINT"),
            _ = quit.recv() => escalate(&app, Phase::Stopping, "SIGQUIT"),
            _ = usr1.recv() => pause_all(&app),
            _ = usr2.recv() => match admin::resume(&app, None) {
                Ok(()) => tracing::info!("all databases resumed (SIGUSR2)"),
                Err(e) => tracing::error!(error = %e, "resume failed (SIGUSR2)"),
            },
        }
    }
}

/// SIGUSR1: pause now; say when every server connection has been released
/// (the moment PgBouncer's PAUSE would return), without holding up other
/// signals meanwhile.
fn pause_all(app: &Arc<App>) {
    tracing::info!("pausing all databases (SIGUSR1)");
    let app = app.clone();
    tokio::spawn(async move {
        match admin::pause(&app, None).await {
            Ok(()) => tracing::info!("all databases paused: no server connection in use"),
            Err(e) => tracing::info!(reason = %e, "pause did not complete"),
        }
    });
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
