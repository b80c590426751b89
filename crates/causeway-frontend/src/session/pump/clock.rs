//! The deadline a configured timeout puts on the attachment: a request
//! owed an answer (query_timeout), a transaction left open
//! (idle_transaction_timeout), a session-mode client sitting idle
//! (client_idle_timeout).

use std::time::Duration;

use causeway_config::PoolMode;
use tokio::time::Instant;

/// Timeouts that apply while a server is attached (None = off).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    pub query: Option<Duration>,
    pub idle_transaction: Option<Duration>,
    /// Session mode: the client attached but idle.
    pub client_idle: Option<Duration>,
}

pub struct Clock {
    timeouts: Timeouts,
    deadline: Option<Instant>,
}

impl Clock {
    pub fn new(timeouts: Timeouts) -> Self {
        Clock {
            timeouts,
            deadline: None,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The first request of a turn went out at `now`.
    pub fn request_sent(&mut self, now: Instant) {
        self.deadline = self.timeouts.query.map(|t| now + t);
    }

    /// Everything owed was answered; the server is at `status`.
    pub fn answered(&mut self, status: u8, mode: PoolMode) {
        self.deadline = match status {
            b'I' if mode == PoolMode::Session => self.timeouts.client_idle,
            b'I' => None,
            _ => self.timeouts.idle_transaction,
        }
        .map(|t| Instant::now() + t);
    }
}
