//! Causeway's own session settings (`SET/RESET/SHOW causeway.*`), answered
//! by the pooler without a server, outside transactions, in the simple
//! query protocol.

use causeway_protocol::backend;
use causeway_routing::{CausewayCommand, RouteOverride};

use super::{Session, State};

/// An owned copy of a [`CausewayCommand`] (the buffer it came from is
/// consumed before the answer is written).
#[derive(Debug)]
pub(super) enum LocalCommand {
    Set { name: String, value: String },
    Reset { name: String },
    Show { name: String },
}

impl From<CausewayCommand<'_>> for LocalCommand {
    fn from(c: CausewayCommand<'_>) -> Self {
        match c {
            CausewayCommand::Set { name, value, .. } => LocalCommand::Set {
                name: name.to_ascii_lowercase(),
                value: value.to_string(),
            },
            CausewayCommand::Reset { name } => LocalCommand::Reset {
                name: name.to_ascii_lowercase(),
            },
            CausewayCommand::Show { name } => LocalCommand::Show {
                name: name.to_ascii_lowercase(),
            },
        }
    }
}

fn route_name(r: RouteOverride) -> &'static str {
    match r {
        RouteOverride::Primary => "primary",
        RouteOverride::Replica => "replica",
        RouteOverride::Auto => "auto",
    }
}

fn parse_route(v: &str) -> Option<RouteOverride> {
    match v.to_ascii_lowercase().as_str() {
        "primary" => Some(RouteOverride::Primary),
        "replica" => Some(RouteOverride::Replica),
        "auto" | "default" => Some(RouteOverride::Auto),
        _ => None,
    }
}

impl Session {
    /// Answers a Causeway command; Err when the client is gone.
    pub(super) async fn local(&mut self, cmd: LocalCommand) -> Result<(), State> {
        let out = &mut self.client.out;
        match cmd {
            LocalCommand::Set { name, value } if name == "route" => match parse_route(&value) {
                Some(r) => {
                    self.route = r;
                    backend::write_command_complete(out, "SET");
                }
                None => backend::write_error(
                    out,
                    false,
                    "22023",
                    &format!(
                        "invalid value for parameter \"causeway.route\": \"{value}\" (primary, replica or auto)"
                    ),
                ),
            },
            LocalCommand::Reset { name } if name == "route" => {
                self.route = RouteOverride::Auto;
                backend::write_command_complete(out, "RESET");
            }
            LocalCommand::Show { name } if name == "route" => {
                backend::write_text_row_description(out, &["causeway.route"]);
                backend::write_data_row(out, [Some(route_name(self.route))]);
                backend::write_command_complete(out, "SHOW");
            }
            LocalCommand::Set { name, .. }
            | LocalCommand::Reset { name }
            | LocalCommand::Show { name } => backend::write_error(
                out,
                false,
                "42704",
                &format!("unrecognized configuration parameter \"causeway.{name}\""),
            ),
        }
        backend::write_ready_for_query(out, b'I');
        self.client
            .flush()
            .await
            .map_err(|_| State::Closed("client closed connection"))
    }
}
