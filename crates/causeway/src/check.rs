//! `causeway check-config --connect`: logs in to every server of every
//! database with the credentials the lag monitor would use, so that a
//! monitor that cannot log in is found before it runs.

use std::process::ExitCode;
use std::time::Duration;

use causeway_config::Config;
use causeway_monitor::{check_server, CheckResult, Role};

use causeway_frontend::databases::monitor_setup;
use causeway_frontend::secrets::Secrets;
use causeway_frontend::security::Security;

/// Checks every server (databases with one server too: a single server
/// has no monitor, but the same login shows whether it is reachable).
/// Prints one line per server; exit 1 if any failed.
pub fn connect(config: &Config, secrets: &Secrets, security: &Security) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_secs_f64(config.monitor_timeout.max(0.1));
    let mut failed = 0;
    let mut names: Vec<&String> = config.databases.keys().filter(|n| *n != "*").collect();
    names.sort();
    println!("\n# check-config --connect: every server, as the lag monitor logs in");
    for name in names {
        let db = &config.databases[name];
        let servers = db.server_list();
        let tls = security.server_tls(&config.server_tls_for(db));
        let (addrs, _) = monitor_setup(db, &servers, config, secrets, &tls);
        for a in &addrs {
            let what = format!("{name} {}:{} as \"{}\"", a.host, a.port, a.user);
            match rt.block_on(check_server(a, timeout)) {
                CheckResult::Ok {
                    role,
                    position,
                    reduced,
                } => {
                    let role = match role {
                        Role::Primary => "primary",
                        Role::Replica => "replica",
                        Role::Unknown => "unknown",
                    };
                    println!(
                        "# ok      {what}: {role} at {}{}",
                        position.as_deref().unwrap_or("?"),
                        if reduced {
                            " (reduced probe: no system identifier; grant pg_read_all_stats for the standby timeline)"
                        } else {
                            ""
                        }
                    );
                }
                CheckResult::LoginRefused(e) => {
                    failed += 1;
                    println!("# FAILED  {what}: login refused: {e} (set monitor_user / monitor_password, or add the user to the auth_file)");
                }
                CheckResult::Failed(e) => {
                    failed += 1;
                    println!("# FAILED  {what}: {e}");
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("causeway: {failed} server(s) failed the check");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
