//! The admin console: the virtual database `pgbouncer` (also `causeway`),
//! simple query protocol only, answering like PgBouncer's so dashboards,
//! exporters and runbooks keep working.

mod command;
mod control;
mod show;
mod show_databases;
mod show_info;
mod show_peers;
mod show_pools;
mod show_stats;
mod show_topology;
mod table;

use std::sync::Arc;

use causeway_protocol::{backend, scan::body, sqlstate, HEADER_LEN};

use crate::app::App;
use crate::client::Client;
use command::Command;
pub use control::{pause, resume};

/// Names of the admin console's virtual database.
pub fn is_admin_db(name: &str) -> bool {
    name == "pgbouncer" || name == "causeway"
}

/// admin_users may do everything, stats_users only SHOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Stats,
}

pub fn role_of(app: &App, user: &str) -> Option<Role> {
    let cfg = app.config();
    if cfg.admin_users.iter().any(|u| u == user) {
        Some(Role::Admin)
    } else if cfg.stats_users.iter().any(|u| u == user) {
        Some(Role::Stats)
    } else {
        None
    }
}

/// Admin queries are short; anything bigger is refused.
const MAX_ADMIN_MESSAGE: usize = 64 * 1024;

/// Serves a logged-in admin client until it leaves.
pub async fn serve(app: &Arc<App>, client: &mut Client, role: Role) {
    for (k, v) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("application_name", ""),
    ] {
        backend::write_parameter_status(&mut client.out, k, v);
    }
    backend::write_backend_key_data(&mut client.out, 0, &[0; 4]);
    backend::write_ready_for_query(&mut client.out, b'I');
    if client.flush().await.is_err() {
        return;
    }
    loop {
        let frame = loop {
            if client.buf.len() >= HEADER_LEN {
                let len = i32::from_be_bytes([
                    client.buf[1],
                    client.buf[2],
                    client.buf[3],
                    client.buf[4],
                ]);
                if len < 4 || len as usize > MAX_ADMIN_MESSAGE {
                    client
                        .fatal(sqlstate::PROTOCOL_VIOLATION, "invalid message length")
                        .await;
                    return;
                }
                if client.buf.len() > len as usize {
                    break client.buf.split_to(len as usize + 1);
                }
            }
            match client.read_more().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        match frame[0] {
            b'Q' => {
                let sql = std::str::from_utf8(body(&frame))
                    .unwrap_or("")
                    .trim_end_matches('\0');
                answer(app, client, role, sql).await;
                backend::write_ready_for_query(&mut client.out, b'I');
                if client.flush().await.is_err() {
                    return;
                }
            }
            b'X' => return,
            _ => {
                client
                    .fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the admin console supports only the simple query protocol",
                    )
                    .await;
                return;
            }
        }
    }
}

async fn answer(app: &Arc<App>, client: &mut Client, role: Role, sql: &str) {
    let cmd = match command::parse(sql) {
        Ok(c) => c,
        Err(e) => {
            backend::write_error(&mut client.out, false, sqlstate::SYNTAX_ERROR, &e);
            return;
        }
    };
    match cmd {
        Command::Empty => backend::write_empty_query(&mut client.out),
        Command::Show(what) => match show::table(app, &what) {
            Some(t) => t.write(&mut client.out, "SHOW"),
            None if what == "HELP" => {
                backend::write_notice(&mut client.out, "00000", show_info::HELP);
                backend::write_command_complete(&mut client.out, "SHOW");
            }
            None => backend::write_error(
                &mut client.out,
                false,
                sqlstate::SYNTAX_ERROR,
                &format!("unknown SHOW target: {what}"),
            ),
        },
        other if role != Role::Admin => {
            let _ = other;
            backend::write_error(
                &mut client.out,
                false,
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "admin access needed (admin_users)",
            );
        }
        other => match control::run(app, other).await {
            Ok(tag) => backend::write_command_complete(&mut client.out, tag),
            Err(e) => backend::write_error(
                &mut client.out,
                false,
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                &e,
            ),
        },
    }
}
