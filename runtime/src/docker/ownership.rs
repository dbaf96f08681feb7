//! Container ownership from labels: whoever created a container through alknet owns it.

use bollard::Docker;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{LABEL_MANAGED, LABEL_OWNER};
use crate::access::OwnershipProvider;
use crate::identity::Identity;

/// The [`OwnershipProvider`] for resource `container`: the caller owns a container labelled
/// `alknet.managed=true` and `alknet.owner=<caller id>`, for every action. Containers that do
/// not exist, or that the daemon cannot describe, are owned by nobody (the static
/// `resources.container` grant still applies).
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
}
