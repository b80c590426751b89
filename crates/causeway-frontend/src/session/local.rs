//! Causeway's own session settings (`SET/RESET/SHOW causeway.*`), answered
//! by the pooler without a server, outside transactions, in the simple
//! query protocol.

use causeway_config::Consistency;
use causeway_protocol::backend;
use causeway_routing::{CausewayCommand, RouteOverride, Token, TokenError};

use super::{Session, State};

/// An owned copy of a [`CausewayCommand`] (the buffer it came from is
/// consumed before the answer is written).
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// Answers a Causeway command in the simple protocol; Err when the
    /// client is gone.
    pub(super) async fn local(&mut self, cmd: LocalCommand) -> Result<(), State> {
        let answer = self.answer(cmd).await;
        let out = &mut self.client.out;
        match &answer {
            Answer::Row { column, value } => {
                backend::write_text_row_description(out, &[column]);
                backend::write_data_row(out, [Some(value.as_str())]);
            }
            Answer::Done(_) | Answer::Error(..) => {}
        }
        answer.complete(out);
        self.local_done().await
    }

    /// Runs a Causeway command (any protocol).
    pub(super) async fn answer(&mut self, cmd: LocalCommand) -> Answer {
        match cmd {
            LocalCommand::Set { name, value } if name == "token" => {
                match self.import_token(Token::decode(&value)) {
                    Ok(()) => Answer::Done("SET"),
                    Err(e) => Answer::Error("22023", e),
                }
            }
            LocalCommand::Show { name } if name == "token" => {
                // It must include the last write's position.
                self.settle_pending().await;
                Answer::Row {
                    column: "causeway.token",
                    value: self.ryw.token.map(|t| t.encode()).unwrap_or_default(),
                }
            }
            LocalCommand::Reset { name } if name == "token" => Answer::Error(
                "55000",
                "causeway.token cannot be reset: tokens never go backwards".into(),
            ),
            LocalCommand::Set { name, value } if name == "route" => match parse_route(&value) {
                Some(r) => {
                    self.route = r;
                    Answer::Done("SET")
                }
                None => Answer::Error(
                    "22023",
                    format!(
                        "invalid value for parameter \"causeway.route\": \"{value}\" (primary, replica or auto)"
                    ),
                ),
            },
            LocalCommand::Reset { name } if name == "route" => {
                self.route = RouteOverride::Auto;
                Answer::Done("RESET")
            }
            LocalCommand::Show { name } if name == "route" => Answer::Row {
                column: "causeway.route",
                value: route_name(self.route).into(),
            },
            LocalCommand::Set { name, value } if name == "consistency" => {
                match Consistency::parse(&value) {
                    Some(c) => {
                        self.ryw.mode = c;
                        Answer::Done("SET")
                    }
                    None => Answer::Error(
                        "22023",
                        format!(
                            "invalid value for parameter \"causeway.consistency\": \"{value}\" (none, session or global)"
                        ),
                    ),
                }
            }
            LocalCommand::Reset { name } if name == "consistency" => {
                self.ryw.mode = self.cfg.consistency_for(&self.db.cfg(), self.user());
                Answer::Done("RESET")
            }
            LocalCommand::Show { name } if name == "consistency" => Answer::Row {
                column: "causeway.consistency",
                value: self.ryw.mode.as_str().into(),
            },
            LocalCommand::Set { name, .. }
            | LocalCommand::Reset { name }
            | LocalCommand::Show { name } => Answer::Error(
                "42704",
                format!("unrecognized configuration parameter \"causeway.{name}\""),
            ),
        }
    }

    async fn local_done(&mut self) -> Result<(), State> {
        backend::write_ready_for_query(&mut self.client.out, b'I');
        self.client
            .flush()
            .await
            .map_err(|_| State::Closed("client closed connection"))
    }
}

/// What a Causeway command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// One row of one text column (SHOW).
    Row { column: &'static str, value: String },
    /// A command tag (SET, RESET).
    Done(&'static str),
    /// An error (SQLSTATE, message).
    Error(&'static str, String),
}

impl Answer {
    /// The end of the answer: CommandComplete, or the ErrorResponse.
    pub fn complete(&self, out: &mut bytes::BytesMut) {
        match self {
            Answer::Row { .. } => backend::write_command_complete(out, "SHOW"),
            Answer::Done(tag) => backend::write_command_complete(out, tag),
            Answer::Error(code, msg) => backend::write_error(out, false, code, msg),
        }
    }
}

impl LocalCommand {
    /// The column a command returns (SHOW), if any.
    pub fn column(&self) -> Option<String> {
        match self {
            LocalCommand::Show { name } => Some(format!("causeway.{name}")),
            _ => None,
        }
    }
}
