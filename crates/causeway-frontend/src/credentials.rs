//! What a client proved at login, reused to log in to the servers on its
//! behalf (the session fills it in; live databases build pool logins from
//! it).

use causeway_protocol::auth::ScramKeys;

/// What the client proved, reusable towards the servers.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The plaintext password, when the client sent one (auth_type plain).
    pub password: Option<String>,
    /// SCRAM keys recovered from the client's proof against a stored verifier.
    pub scram_keys: Option<ScramKeys>,
}
