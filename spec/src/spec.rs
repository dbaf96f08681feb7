//! [`OperationSpec`]: the one description of an operation that every part of alknet reads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes::ProtocolCode;
use crate::name::{NameError, namespace_of, validate_name};

/// The three kinds of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// Read-only, one result.
    Query,
    /// Has side effects, one result.
    Mutation,
    /// A stream of results.
    Subscription,
}

impl OpType {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpType::Query => "query",
            OpType::Mutation => "mutation",
            OpType::Subscription => "subscription",
        }
    }

    /// True for query and mutation: one request, one answer.
    pub const fn is_unary(self) -> bool {
        !matches!(self, OpType::Subscription)
    }
}

/// Who may reach an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Callable by remote callers over every transport.
    #[default]
    External,
    /// Reachable only by composition from other operations; never listed, `NOT_FOUND` remotely.
    Internal,
}

/// A declared domain error of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSpec {
    /// The error code, e.g. `DEMO_FAILED`. Must not be a protocol code.
    pub code: String,
    /// What the error means.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the error's `details`, when it carries any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// HTTP status the gateway answers with; 500 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

impl ErrorSpec {
    /// A domain error with a code and description.
    pub fn new(code: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            description: description.into(),
            schema: None,
            http_status: None,
        }
    }

    /// Sets the HTTP status.
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// Sets the schema of `details`.
    pub fn with_schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }
}

/// What a caller needs to be allowed to call an operation. Empty means public.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccessControl {
    /// Every one of these scopes is required.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// When present, at least one of these scopes is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_scopes_any: Option<Vec<String>>,
    /// The kind of resource the operation acts on, e.g. `container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The action on that resource, e.g. `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_action: Option<String>,
}

impl AccessControl {
    /// True when anyone may call.
    pub fn is_public(&self) -> bool {
        self.required_scopes.is_empty()
            && self.required_scopes_any.is_none()
            && self.resource_type.is_none()
    }
}

/// The IR: everything known about one operation. Field names are the wire names of design §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSpec {
    /// Registry form, no leading slash: `math/add`.
    pub name: String,
    /// First segment of `name`. Filled in from the name when absent in JSON.
    #[serde(default)]
    pub namespace: String,
    /// Query, mutation or subscription.
    pub op_type: OpType,
    /// External (default) or internal.
    #[serde(default)]
    pub visibility: Visibility,
    /// Human description; may be empty.
    #[serde(default)]
    pub description: String,
    /// JSON Schema 2020-12 of the input, self-contained (shared types under `$defs`).
    #[serde(default = "any_schema")]
    pub input_schema: Value,
    /// JSON Schema 2020-12 of the output; for a subscription, of one item.
    #[serde(default = "any_schema")]
    pub output_schema: Value,
    /// Declared domain errors.
    #[serde(default)]
    pub error_schemas: Vec<ErrorSpec>,
    /// Required scopes and resource rules.
    #[serde(default)]
    pub access_control: AccessControl,
    /// JSON Pointer into the input naming the resource id, e.g. `/containerId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id_path: Option<String>,
    /// Whether callers should stop using the operation.
    #[serde(default)]
    pub deprecated: bool,
    /// A subscription that can continue after a point its caller names (the last item it
    /// received, numbered from 1): the handler reads it from its context and goes on from the
    /// next item, without gaps or duplicates. Subscriptions only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumable: bool,
}

fn any_schema() -> Value {
    Value::Bool(true)
}

/// Why an [`OperationSpec`] is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The name breaks the name rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// `namespace` is not the first segment of `name`.
    #[error("operation `{name}`: namespace `{namespace}` is not the first segment of the name")]
    NamespaceMismatch {
        /// The operation.
        name: String,
        /// The namespace it declared.
        namespace: String,
    },
    /// A schema is neither an object nor a boolean.
    #[error("operation `{name}`: {which} must be a JSON Schema object or boolean")]
    BadSchema {
        /// The operation.
        name: String,
        /// `input_schema`, `output_schema` or an error's `schema`.
        which: String,
    },
    /// A domain error reuses a protocol code or is not `UPPER_SNAKE_CASE`.
    #[error("operation `{name}`: error code `{code}` {problem}")]
    BadErrorCode {
        /// The operation.
        name: String,
        /// The code.
        code: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An HTTP status outside 400..=599.
    #[error("operation `{name}`: error `{code}` has http_status {status}, expected 400..=599")]
    BadHttpStatus {
        /// The operation.
        name: String,
        /// The error code.
        code: String,
        /// The status.
        status: u16,
    },
    /// Only a subscription can be resumable.
    #[error("operation `{name}`: only a subscription can be resumable")]
    NotResumable {
        /// The operation.
        name: String,
    },
    /// `resource_id_path` is not a JSON Pointer, or resource fields are incomplete.
    #[error("operation `{name}`: {problem}")]
    BadResource {
        /// The operation.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

impl OperationSpec {
    /// A spec with the given name and kind, accepting any input and output.
    pub fn new(name: &str, op_type: OpType) -> Result<Self, NameError> {
        validate_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            namespace: namespace_of(name).to_owned(),
            op_type,
            visibility: Visibility::External,
            description: String::new(),
            input_schema: any_schema(),
            output_schema: any_schema(),
            error_schemas: Vec::new(),
            access_control: AccessControl::default(),
            resource_id_path: None,
            deprecated: false,
            resumable: false,
        })
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the input schema.
    pub fn with_input_schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the output schema (item schema for subscriptions).
    pub fn with_output_schema(mut self, schema: Value) -> Self {
        self.output_schema = schema;
        self
    }

    /// Adds a declared domain error.
    pub fn with_error(mut self, error: ErrorSpec) -> Self {
        self.error_schemas.push(error);
        self
    }

    /// Sets the visibility.
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Sets the access rules.
    pub fn with_access(mut self, access: AccessControl) -> Self {
        self.access_control = access;
        self
    }

    /// Sets where the input holds the resource id.
    pub fn with_resource_id_path(mut self, pointer: impl Into<String>) -> Self {
        self.resource_id_path = Some(pointer.into());
        self
    }

    /// Marks the operation deprecated.
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }

    /// Marks a subscription resumable (see [`OperationSpec::resumable`]).
    pub fn resumable(mut self) -> Self {
        self.resumable = true;
        self
    }

    /// The `operationId` used on the wire: the name with a leading slash.
    pub fn wire_id(&self) -> String {
        format!("/{}", self.name)
    }

    /// The declared domain error with this code, if any.
    pub fn declared_error(&self, code: &str) -> Option<&ErrorSpec> {
        self.error_schemas.iter().find(|e| e.code == code)
    }

    /// Fills `namespace` from the name when it was left empty (as JSON may do).
    pub fn normalize(&mut self) {
        if self.namespace.is_empty() {
            self.namespace = namespace_of(&self.name).to_owned();
        }
    }

    /// Checks every rule of design §3 that can be checked without compiling schemas.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        let name = || self.name.clone();
        if self.namespace != namespace_of(&self.name) {
            return Err(SpecError::NamespaceMismatch {
                name: name(),
                namespace: self.namespace.clone(),
            });
        }
        for (which, schema) in [
            ("input_schema", &self.input_schema),
            ("output_schema", &self.output_schema),
        ] {
            if !is_schema(schema) {
                return Err(SpecError::BadSchema {
                    name: name(),
                    which: which.to_owned(),
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for error in &self.error_schemas {
            let bad = |problem| SpecError::BadErrorCode {
                name: name(),
                code: error.code.clone(),
                problem,
            };
            check_error_code(&error.code).map_err(bad)?;
            if !seen.insert(error.code.as_str()) {
                return Err(bad("is declared twice"));
            }
            if let Some(status) = error.http_status
                && !(400..=599).contains(&status)
            {
                return Err(SpecError::BadHttpStatus {
                    name: name(),
                    code: error.code.clone(),
                    status,
                });
            }
            if let Some(schema) = &error.schema
                && !is_schema(schema)
            {
                return Err(SpecError::BadSchema {
                    name: name(),
                    which: format!("the schema of error `{}`", error.code),
                });
            }
        }
        if self.resumable && self.op_type != OpType::Subscription {
            return Err(SpecError::NotResumable { name: name() });
        }
        let bad_resource = |problem: &str| SpecError::BadResource {
            name: name(),
            problem: problem.to_owned(),
        };
        if let Some(pointer) = &self.resource_id_path
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            return Err(bad_resource(
                "resource_id_path must be a JSON Pointer starting with `/`",
            ));
        }
        let access = &self.access_control;
        if access.resource_type.is_some() != access.resource_action.is_some() {
            return Err(bad_resource(
                "resource_type and resource_action must be set together",
            ));
        }
        if access.resource_type.is_some() && self.resource_id_path.is_none() {
            return Err(bad_resource(
                "a resource check needs resource_id_path to find the resource id in the input",
            ));
        }
        Ok(())
    }
}

/// Checks a domain error code: `UPPER_SNAKE_CASE` and not one of the protocol codes. The error
/// says what is wrong, to be prefixed with the code.
pub fn check_error_code(code: &str) -> Result<(), &'static str> {
    if ProtocolCode::is_protocol_code(code) {
        return Err("reuses a protocol error code");
    }
    if !is_upper_snake(code) {
        return Err("must be UPPER_SNAKE_CASE, like `NOT_ENOUGH_FUNDS`");
    }
    Ok(())
}

fn is_schema(value: &Value) -> bool {
    value.is_object() || value.is_boolean()
}

fn is_upper_snake(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some('A'..='Z'))
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> OperationSpec {
        OperationSpec::new("docker/container/stop", OpType::Mutation)
            .unwrap()
            .with_description("Stops a container.")
            .with_input_schema(
                json!({"type": "object", "properties": {"containerId": {"type": "string"}}}),
            )
            .with_output_schema(json!({"type": "object"}))
            .with_error(
                ErrorSpec::new("CONTAINER_NOT_FOUND", "no such container")
                    .with_http_status(404)
                    .with_schema(json!({"type": "object"})),
            )
            .with_access(AccessControl {
                required_scopes: vec!["docker".into()],
                required_scopes_any: Some(vec!["ops".into(), "admin".into()]),
                resource_type: Some("container".into()),
                resource_action: Some("stop".into()),
            })
            .with_resource_id_path("/containerId")
            .deprecated()
    }

    #[test]
    fn wire_field_names_are_exact() {
        let value = serde_json::to_value(full()).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "name",
            "namespace",
            "op_type",
            "visibility",
            "description",
            "input_schema",
            "output_schema",
            "error_schemas",
            "access_control",
            "resource_id_path",
            "deprecated",
        ] {
            assert!(keys.contains(&key), "missing {key}");
        }
        assert_eq!(value["op_type"], "mutation");
        assert_eq!(value["visibility"], "external");
        assert_eq!(value["namespace"], "docker");
        assert_eq!(value["error_schemas"][0]["http_status"], 404);
        assert_eq!(value["access_control"]["required_scopes_any"][1], "admin");
    }

    #[test]
    fn json_round_trip() {
        let spec = full();
        spec.validate().unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        let back: OperationSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn minimal_json_gets_defaults() {
        let mut spec: OperationSpec =
            serde_json::from_value(json!({"name": "demo/echo", "op_type": "query"})).unwrap();
        spec.normalize();
        spec.validate().unwrap();
        assert_eq!(spec.namespace, "demo");
        assert_eq!(spec.visibility, Visibility::External);
        assert_eq!(spec.input_schema, json!(true));
        assert!(spec.access_control.is_public());
        assert!(!spec.deprecated);
    }

    #[test]
    fn rejects_protocol_codes_and_bad_codes() {
        for (code, problem) in [
            ("NOT_FOUND", "reuses"),
            ("TIMEOUT", "reuses"),
            ("lower", "UPPER_SNAKE"),
            ("9LIVES", "UPPER_SNAKE"),
        ] {
            let spec = OperationSpec::new("a/b", OpType::Query)
                .unwrap()
                .with_error(ErrorSpec::new(code, ""));
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.contains(problem), "{code}: {err}");
        }
        let twice = OperationSpec::new("a/b", OpType::Query)
            .unwrap()
            .with_error(ErrorSpec::new("X", ""))
            .with_error(ErrorSpec::new("X", ""));
        assert!(twice.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn rejects_inconsistent_fields() {
        let mut spec = full();
        spec.namespace = "other".into();
        assert!(matches!(
            spec.validate(),
            Err(SpecError::NamespaceMismatch { .. })
        ));

        let mut spec = full();
        spec.input_schema = json!("string");
        assert!(matches!(spec.validate(), Err(SpecError::BadSchema { .. })));

        let mut spec = full();
        spec.resource_id_path = Some("containerId".into());
        assert!(matches!(
            spec.validate(),
            Err(SpecError::BadResource { .. })
        ));

        let mut spec = full();
        spec.resource_id_path = None;
        assert!(matches!(
            spec.validate(),
            Err(SpecError::BadResource { .. })
        ));

        let mut spec = full();
        spec.error_schemas[0].http_status = Some(200);
        assert!(matches!(
            spec.validate(),
            Err(SpecError::BadHttpStatus { .. })
        ));

        let spec = full().resumable();
        assert!(matches!(
            spec.validate(),
            Err(SpecError::NotResumable { .. })
        ));
    }

    #[test]
    fn resumable_is_written_only_when_true() {
        let stream = OperationSpec::new("feed/ticks", OpType::Subscription).unwrap();
        assert!(
            serde_json::to_value(&stream)
                .unwrap()
                .get("resumable")
                .is_none()
        );
        let resumable = stream.resumable();
        resumable.validate().unwrap();
        let value = serde_json::to_value(&resumable).unwrap();
        assert_eq!(value["resumable"], json!(true));
        let back: OperationSpec = serde_json::from_value(value).unwrap();
        assert!(back.resumable);
    }
}
