//! How Drover processes reach each other.
//!
//! - [`tls`]: mutual TLS from PEM files, reloaded in place when rotated;
//! - [`identity`]: what a peer's certificate says it is (node, worker or
//!   client);
//! - [`certs`]: issuing a CA and those certificates (`drover certs`);
//! - [`credentials`]: the bearer token clients send;
//! - [`dial`]: one way for every client to open a channel;
//! - [`leader`]: one client of the cluster that follows its leader.

pub mod certs;
pub mod credentials;
pub mod dial;
pub mod identity;
pub mod leader;
pub mod tls;

pub use credentials::{AuthChannel, Bearer};
pub use dial::{DialError, Dialer};
pub use identity::PeerIdentity;
pub use leader::{CallError, Coordinators, Policy};
pub use tls::client::ClientTls;
pub use tls::server::ServerTls;
pub use tls::{TlsError, TlsFiles};
