//! The access check of design §5: scopes, any-of scopes, and resource rules decided by an
//! [`OwnershipProvider`] with the identity's static grants as fallback.

use alknet_spec::OperationSpec;
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::error::CallError;
use crate::identity::Identity;

/// Decides whether a caller owns a resource, for operations whose access names a
/// `resource_type` (for example the Docker pack: containers labelled with their owner).
/// Registered per resource type with [`Registry::set_ownership`](crate::Registry::set_ownership).
pub trait OwnershipProvider: Send + Sync + 'static {
    /// Whether `identity` may perform `action` on the resource `resource_id` because it owns
    /// it. `false` falls back to the identity's static `resources` grants.
    fn owns<'a>(
        &'a self,
        identity: &'a Identity,
        resource_id: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, bool>;

    /// The answer for a caller who may not perform `action` on `resource_id` (not the owner,
    /// no static grant). By default `FORBIDDEN`; a provider that hides resources from callers
    /// who may not see them answers its own "not found" instead, the same whether the resource
    /// exists or not, so nothing leaks.
    fn refusal<'a>(
        &'a self,
        identity: &'a Identity,
        resource_id: &'a str,
        action: &'a str,
        resource_type: &'a str,
    ) -> BoxFuture<'a, CallError> {
        let _ = (identity, resource_id);
        Box::pin(async move { forbidden_action(action, resource_type) })
    }
}

/// `FORBIDDEN` for an action on a resource the caller may not perform it on.
pub fn forbidden_action(action: &str, resource_type: &str) -> CallError {
    CallError::forbidden(format!("not allowed: `{action}` on this {resource_type}"))
}

/// Decides whether `identity` may call `spec` with `input`.
///
/// All `required_scopes` must be held; at least one of `required_scopes_any` when present; and
/// when `resource_type` is set, either `ownership` says the caller owns the resource named at
/// `resource_id_path` in the input, or the identity's static `resources` grant lists the
/// action. A restricted operation with no identity is `FORBIDDEN` "authentication required".
pub async fn authorize(
    spec: &OperationSpec,
    identity: Option<&Identity>,
    input: &Value,
    ownership: Option<&dyn OwnershipProvider>,
) -> Result<(), CallError> {
    let access = &spec.access_control;
    if access.is_public() {
        return Ok(());
    }
    let Some(identity) = identity else {
        return Err(CallError::forbidden("authentication required"));
    };
    check_scopes(spec, identity)?;
    let (Some(resource_type), Some(action)) = (&access.resource_type, &access.resource_action)
    else {
        return Ok(());
    };
    let resource_id = resource_id(spec, input);
    if let (Some(provider), Some(resource_id)) = (ownership, &resource_id)
        && provider.owns(identity, resource_id, action).await
    {
        return Ok(());
    }
    if identity.has_resource_grant(resource_type, action) {
        return Ok(());
    }
    Err(match (ownership, &resource_id) {
        (Some(provider), Some(resource_id)) => {
            provider
                .refusal(identity, resource_id, action, resource_type)
                .await
        }
        _ => forbidden_action(action, resource_type),
    })
}

fn check_scopes(spec: &OperationSpec, identity: &Identity) -> Result<(), CallError> {
    let access = &spec.access_control;
    if let Some(missing) = access
        .required_scopes
        .iter()
        .find(|s| !identity.has_scope(s))
    {
        return Err(CallError::forbidden(format!("missing scope `{missing}`")));
    }
    if let Some(any) = &access.required_scopes_any
        && !any.iter().any(|s| identity.has_scope(s))
    {
        return Err(CallError::forbidden(format!(
            "requires one of the scopes {}",
            any.join(", ")
        )));
    }
    Ok(())
}

/// The resource id at the spec's `resource_id_path`: a string, or a number written as one.
fn resource_id(spec: &OperationSpec, input: &Value) -> Option<String> {
    match input.pointer(spec.resource_id_path.as_deref()?)? {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether discovery should show `spec` to `identity`: the scope rules of [`authorize`]. Resource
/// rules depend on the input, so they are decided per call, not at listing time.
pub fn may_list(spec: &OperationSpec, identity: Option<&Identity>) -> bool {
    if spec.access_control.is_public() {
        return true;
    }
    identity.is_some_and(|identity| check_scopes(spec, identity).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alknet_spec::{AccessControl, OpType};
    use serde_json::json;

    fn op(access: AccessControl) -> OperationSpec {
        OperationSpec::new("a/b", OpType::Query)
            .unwrap()
            .with_access(access)
            .with_resource_id_path("/id")
    }

    struct OwnsX;

    impl OwnershipProvider for OwnsX {
        fn owns<'a>(
            &'a self,
            identity: &'a Identity,
            id: &'a str,
            _action: &'a str,
        ) -> BoxFuture<'a, bool> {
            Box::pin(async move { identity.id == "owner" && id == "x" })
        }
    }

    fn check(
        spec: &OperationSpec,
        identity: Option<&Identity>,
        input: &Value,
    ) -> Result<(), CallError> {
        futures_util::FutureExt::now_or_never(authorize(spec, identity, input, Some(&OwnsX)))
            .unwrap()
    }

    #[test]
    fn rules() {
        let input = json!({"id": "x"});
        let authorize = |spec: &OperationSpec, identity: Option<&Identity>, input: &Value| {
            check(spec, identity, input)
        };
        let public = op(AccessControl::default());
        authorize(&public, None, &input).unwrap();

        let admin = op(AccessControl {
            required_scopes: vec!["admin".into()],
            ..Default::default()
        });
        let err = authorize(&admin, None, &input).unwrap_err();
        assert_eq!(err.message, "authentication required");
        let user = Identity::new("u", ["read"]);
        assert!(authorize(&admin, Some(&user), &input).is_err());
        authorize(&admin, Some(&Identity::new("a", ["admin"])), &input).unwrap();

        let any = op(AccessControl {
            required_scopes_any: Some(vec!["x".into(), "read".into()]),
            ..Default::default()
        });
        authorize(&any, Some(&user), &input).unwrap();
        assert!(authorize(&any, Some(&Identity::new("n", ["none"])), &input).is_err());

        let resource = op(AccessControl {
            resource_type: Some("container".into()),
            resource_action: Some("stop".into()),
            ..Default::default()
        });
        assert!(authorize(&resource, Some(&user), &input).is_err());
        let mut granted = user.clone();
        granted
            .resources
            .insert("container".into(), vec!["stop".into()]);
        authorize(&resource, Some(&granted), &input).unwrap();
    }
}
