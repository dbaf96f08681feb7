//! Who is calling (design §5).
//!
//! An [`Identity`] is what access control reads. An [`IdentityProvider`] resolves one from the
//! fingerprint of a TLS client certificate (once per connection) or from a token (per request).
//! [`ConfigIdentities`] is the shipped provider, read from a TOML file; [`token`] makes and
//! hashes tokens.

mod config;
pub mod token;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tls::Fingerprint;

pub(crate) use config::line_of as config_line_of;
pub use config::{ConfigError, ConfigIdentities};

/// Resolves callers. Both methods must be cheap and must not reveal, through errors or
/// timing, which tokens or certificates exist: an unknown one simply resolves to `None`.
pub trait IdentityProvider: Send + Sync + 'static {
    /// The identity of a peer presenting a client certificate with this fingerprint.
    fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity>;

    /// The identity a bearer token stands for.
    fn by_token(&self, token: &str) -> Option<Identity>;
}

/// A resolved caller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    /// Stable id of the caller (a peer name, a token owner).
    pub id: String,
    /// Scopes held, e.g. `admin`, `docker`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Static resource grants: resource type → actions allowed on any resource of that type.
    #[serde(default)]
    pub resources: BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// An identity with an id and scopes, no resource grants.
    pub fn new(id: impl Into<String>, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id: id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            resources: BTreeMap::new(),
        }
    }

    /// Whether the identity holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the static grants allow `action` on resources of `resource_type`.
    pub fn has_resource_grant(&self, resource_type: &str, action: &str) -> bool {
        self.resources
            .get(resource_type)
            .is_some_and(|actions| actions.iter().any(|a| a == action || a == "*"))
    }
}
