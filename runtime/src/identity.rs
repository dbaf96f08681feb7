//! Who is calling (design §5).
//!
//! An [`Identity`] is what access control reads. This module holds the data type; resolving
//! identities from client certificates and tokens is the identity provider's job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
