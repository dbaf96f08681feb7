//! The access check of design §5, as a pure function of spec, identity and input.

use alknet_spec::OperationSpec;
use serde_json::Value;

use crate::error::CallError;
use crate::identity::Identity;

/// Decides whether `identity` may call `spec` with `input`.
///
/// All `required_scopes` must be held; at least one of `required_scopes_any` when present; and
/// when `resource_type` is set, the identity's static `resources` grant must list the action.
/// A restricted operation with no identity is `FORBIDDEN` "authentication required".
pub fn authorize(
    spec: &OperationSpec,
    identity: Option<&Identity>,
    _input: &Value,
) -> Result<(), CallError> {
    let access = &spec.access_control;
    if access.is_public() {
        return Ok(());
    }
    let Some(identity) = identity else {
        return Err(CallError::forbidden("authentication required"));
    };
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
    if let (Some(resource_type), Some(action)) = (&access.resource_type, &access.resource_action)
        && !identity.has_resource_grant(resource_type, action)
    {
        return Err(CallError::forbidden(format!(
            "not allowed to {action} this {resource_type}"
        )));
    }
    Ok(())
}

/// Whether discovery should show `spec` to `identity`: the scope rules of [`authorize`]. Resource
/// rules depend on the input, so they are decided per call, not at listing time.
pub fn may_list(spec: &OperationSpec, identity: Option<&Identity>) -> bool {
    let access = &spec.access_control;
    if access.is_public() {
        return true;
    }
    let Some(identity) = identity else {
        return false;
    };
    access.required_scopes.iter().all(|s| identity.has_scope(s))
        && access
            .required_scopes_any
            .as_ref()
            .is_none_or(|any| any.iter().any(|s| identity.has_scope(s)))
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

    #[test]
    fn rules() {
        let input = json!({"id": "x"});
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
