//! Authentication, sans-IO: stored secrets and the auth file, md5, both sides
//! of SCRAM-SHA-256, and the wire messages that carry them.
//!
//! Nothing here touches a socket; the connection code feeds message bodies in
//! and writes the returned bytes out.

pub mod channel_binding;
pub mod md5;
pub mod messages;
pub mod scram_client;
pub mod scram_passthrough;
pub mod scram_server;
pub mod secret;
pub mod userlist;

pub use self::channel_binding::{ClientBinding, SCRAM_SHA_256_PLUS};
pub use self::md5::{md5_password_hash, md5_salted_response, verify_md5_response};
pub use self::messages::{parse_auth_request, AuthRequest, MessageError, SCRAM_SHA_256};
pub use self::scram_client::{ScramClient, ScramClientError};
pub use self::scram_passthrough::{
    server_first_salt, PassthroughError, ScramKeys, ScramPassthrough,
};
pub use self::scram_server::{ScramError, ScramServer};
pub use self::secret::{ScramVerifier, Secret, SecretError};
pub use self::userlist::{parse_userlist, UserlistError, UserlistErrorKind};

/// Any authentication failure, for callers that just want `?`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Userlist(#[from] UserlistError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Scram(#[from] ScramError),
    #[error(transparent)]
    ScramClient(#[from] ScramClientError),
}
