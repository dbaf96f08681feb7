//! Fleets (design §13): many nodes, one view. Membership and discovery run on NATS (a
//! JetStream key-value bucket with a per-key TTL, feature `fleet-nats`), or come from a static
//! file that needs no server.
//!
//! - [`record`]: what a member publishes about itself, and selecting members by label;
//! - [`nats`]: keeping a node's record in the bucket, and following the bucket;
//! - [`Fleet`] (`client`): one client over every member: `call_all`, `call_any`,
//!   `subscribe_all`, a watch of joins and leaves;
//! - [`federation`]: serving every member's operations as `fleet/<node>/<op>`.

mod client;
mod directory;
pub mod federation;
#[cfg(feature = "fleet-nats")]
pub mod nats;
pub mod record;

pub use client::{Fleet, FleetSource, NodeItem, NodeResult};
pub use directory::FleetEvent;
pub use record::{MemberRecord, Selector};

/// Why a fleet could not be read or joined.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// NATS could not be reached or used.
    #[error("fleet on NATS {url}: {reason}")]
    Nats {
        /// The server(s).
        url: String,
        /// Why.
        reason: String,
    },
    /// A static fleet file could not be read.
    #[error("fleet file {path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The QUIC client could not be made.
    #[error("fleet client: {0}")]
    Client(String),
}
