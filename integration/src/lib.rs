//! Test harness for Causeway: a real PostgreSQL primary with streaming
//! replicas ([`cluster`]) and a launcher for the Causeway binary
//! ([`causeway`]).

pub mod causeway;
pub mod cluster;
pub mod cluster_tls;
pub mod faults;
pub mod frames;
pub mod pki;
pub mod raw;
pub mod ryw_check;
pub mod wait;
pub mod writer;

pub use causeway::{causeway_bin, free_port, userlist, CausewayBuilder, CausewayProcess};
pub use cluster::{free_ports, shared_cluster, Cluster, ClusterOptions, Node};
pub use pki::{CertFiles, Pki};
pub use wait::{eventually, eventually_blocking, poll, poll_blocking};
pub use writer::{http_get, Writer};
