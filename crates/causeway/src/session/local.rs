//! Causeway's own session settings (`SET/RESET/SHOW causeway.*`), answered
//! by the pooler without a server, outside transactions, in the simple
//! query protocol.

use causeway_config::Consistency;
use causeway_protocol::backend;
use causeway_routing::{CausewayCommand, RouteOverride, Token, TokenError};

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
    /// `causeway.*` settings given at startup (`options=-c causeway.x=y`):
    /// applied here and never sent to a server.
    pub(super) fn startup_options(&mut self) -> Result<(), String> {
        if let Some(v) = self.params.get("causeway.route").map(str::to_string) {
            self.params.remove("causeway.route");
            self.route = parse_route(&v).ok_or_else(|| {
                format!("invalid value for parameter \"causeway.route\": \"{v}\"")
            })?;
        }
        if let Some(v) = self.params.get("causeway.consistency").map(str::to_string) {
            self.params.remove("causeway.consistency");
            self.ryw.mode = Consistency::parse(&v).ok_or_else(|| {
                format!("invalid value for parameter \"causeway.consistency\": \"{v}\"")
            })?;
        }
        if let Some(v) = self.params.get("causeway.token").map(str::to_string) {
            self.params.remove("causeway.token");
            self.import_token(Token::decode(&v))?;
        }
        Ok(())
    }

    /// A token from the client (SET, startup option or comment): checked
    /// against this cluster, then it can only raise the session's floor.
    pub(super) fn import_token(&mut self, t: Result<Token, TokenError>) -> Result<(), String> {
        let t = t.map_err(|e| e.to_string())?;
        let topo = self.db.topology();
        if let Some(g) = topo.generation {
            let (ours, theirs) = (g.system_id, t.generation.system_id);
            if ours != 0 && theirs != 0 && ours != theirs {
                return Err(format!(
                    "causeway token is from another cluster (system identifier {theirs:016x}; this cluster is {ours:016x})"
                ));
            }
        }
        if self.ryw.raise(t, topo.generation) {
            self.note_token();
        }
        Ok(())
    }

    /// Answers a Causeway command; Err when the client is gone.
    pub(super) async fn local(&mut self, cmd: LocalCommand) -> Result<(), State> {
        // SHOW causeway.token must include the last write.
        if matches!(&cmd, LocalCommand::Show { name } if name == "token") {
            let topo = self.db.topology();
            self.ryw_floor(&topo).await;
        }
        if let LocalCommand::Set { name, value } = &cmd {
            if name == "token" {
                match self.import_token(Token::decode(value)) {
                    Ok(()) => backend::write_command_complete(&mut self.client.out, "SET"),
                    Err(e) => backend::write_error(&mut self.client.out, false, "22023", &e),
                }
                return self.local_done().await;
            }
        }
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
            LocalCommand::Show { name } if name == "token" => {
                let t = self.ryw.token.map(|t| t.encode()).unwrap_or_default();
                backend::write_text_row_description(out, &["causeway.token"]);
                backend::write_data_row(out, [Some(t.as_str())]);
                backend::write_command_complete(out, "SHOW");
            }
            LocalCommand::Reset { name } if name == "token" => backend::write_error(
                out,
                false,
                "55000",
                "causeway.token cannot be reset: tokens never go backwards",
            ),
            LocalCommand::Set { name, value } if name == "consistency" => {
                match Consistency::parse(&value) {
                    Some(c) => {
                        self.ryw.mode = c;
                        backend::write_command_complete(out, "SET");
                    }
                    None => backend::write_error(
                        out,
                        false,
                        "22023",
                        &format!(
                            "invalid value for parameter \"causeway.consistency\": \"{value}\" (none, session or global)"
                        ),
                    ),
                }
            }
            LocalCommand::Reset { name } if name == "consistency" => {
                self.ryw.mode = self.cfg.consistency_for(&self.db.cfg, &self.user);
                backend::write_command_complete(out, "RESET");
            }
            LocalCommand::Show { name } if name == "consistency" => {
                backend::write_text_row_description(out, &["causeway.consistency"]);
                backend::write_data_row(out, [Some(self.ryw.mode.as_str())]);
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
        self.local_done().await
    }

    async fn local_done(&mut self) -> Result<(), State> {
        backend::write_ready_for_query(&mut self.client.out, b'I');
        self.client
            .flush()
            .await
            .map_err(|_| State::Closed("client closed connection"))
    }
}
