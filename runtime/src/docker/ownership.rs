//! Container ownership from labels: whoever created a container through alknet owns it.
//!
//! Who sees what: the owner sees (and may do everything to) its containers; a static
//! `resources.container` grant lets a caller see every container; scope `docker-admin` sees
//! and may do everything. A container the caller may not see is `CONTAINER_NOT_FOUND`,
//! whether it exists or not, so other people's container names and ids do not leak; one it
//! may see but not act on is `FORBIDDEN`.

use bollard::Docker;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::errors::container_not_found;
use super::{ADMIN_SCOPE, LABEL_MANAGED, LABEL_OWNER};
use crate::access::{OwnershipProvider, forbidden_action};
use crate::error::CallError;
use crate::identity::Identity;

/// Whether `identity` holds a static grant on containers: it sees every container alknet
/// created (not only its own), and learns whether one exists.
pub(super) fn sees_every_container(identity: &Identity) -> bool {
    identity
        .resources
        .get("container")
        .is_some_and(|actions| !actions.is_empty())
}

/// The [`OwnershipProvider`] for resource `container`: the caller owns a container labelled
/// `alknet.managed=true` and `alknet.owner=<caller id>`, for every action; scope
/// `docker-admin` counts as owning every container. Containers that do not exist, or that the
/// daemon cannot describe, are owned by nobody (the static `resources.container` grant still
/// applies).
pub struct LabelOwnership {
    docker: Docker,
}

impl LabelOwnership {
    /// A provider asking `docker` for labels.
    pub fn new(docker: Docker) -> Self {
        Self { docker }
    }
}

impl OwnershipProvider for LabelOwnership {
    fn owns<'a>(
        &'a self,
        identity: &'a Identity,
        resource_id: &'a str,
        _action: &'a str,
    ) -> BoxFuture<'a, bool> {
        async move {
            if identity.has_scope(ADMIN_SCOPE) {
                return true;
            }
            if !super::is_container_ref(resource_id) {
                return false;
            }
            let Ok(container) = self.docker.inspect_container(resource_id, None).await else {
                return false;
            };
            let labels = container.config.and_then(|c| c.labels).unwrap_or_default();
            labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
                && labels.get(LABEL_OWNER) == Some(&identity.id)
        }
        .boxed()
    }

    fn refusal<'a>(
        &'a self,
        identity: &'a Identity,
        resource_id: &'a str,
        action: &'a str,
        resource_type: &'a str,
    ) -> BoxFuture<'a, CallError> {
        async move {
            // Only a caller who may see every container learns that this one exists.
            let sees_all = sees_every_container(identity);
            let exists = super::is_container_ref(resource_id)
                && self
                    .docker
                    .inspect_container(resource_id, None)
                    .await
                    .is_ok();
            if sees_all && exists {
                forbidden_action(action, resource_type)
            } else {
                container_not_found(resource_id)
            }
        }
        .boxed()
    }
}
