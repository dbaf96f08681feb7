//! Built-in discovery operations (design §4.7): `services/list` and `services/schema`.

use alknet_spec::{OpType, OperationName, OperationSpec, Visibility};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access;
use crate::context::Context;
use crate::error::CallError;
use crate::registry::Handler;

/// Name of the listing operation.
pub const LIST: &str = "services/list";
/// Name of the schema operation.
pub const SCHEMA: &str = "services/schema";

/// Whether `name` is one of the built-in discovery operations.
pub fn is_builtin(name: &str) -> bool {
    name == LIST || name == SCHEMA
}

#[derive(Deserialize)]
struct ListInput {
    /// Optional case-insensitive filter on name and description.
    #[serde(default)]
    q: Option<String>,
}

/// One entry of `services/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// Registry name.
    pub name: String,
    /// First segment of the name.
    pub namespace: String,
    /// Query, mutation or subscription.
    pub op_type: OpType,
    /// The description.
    pub description: String,
}

/// The output of `services/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    /// External operations the caller may call, by name.
    pub operations: Vec<OperationSummary>,
}

#[derive(Deserialize)]
struct SchemaInput {
    name: String,
}

pub(crate) fn builtins() -> Vec<(OperationSpec, Handler)> {
    let summary = json!({
        "type": "object",
        "required": ["name", "namespace", "op_type", "description"],
        "properties": {
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "op_type": {"enum": ["query", "mutation", "subscription"]},
            "description": {"type": "string"}
        }
    });
    let list = OperationSpec::new(LIST, OpType::Query)
        .expect("valid name")
        .with_description(
            "Lists the external operations the caller may call, optionally filtered by `q`.",
        )
        .with_input_schema(json!({
            "type": ["object", "null"],
            "properties": {"q": {"type": "string"}}
        }))
        .with_output_schema(json!({
            "type": "object",
            "required": ["operations"],
            "properties": {"operations": {"type": "array", "items": summary}}
        }));
    let schema = OperationSpec::new(SCHEMA, OpType::Query)
        .expect("valid name")
        .with_description("Returns the full OperationSpec of an external operation.")
        .with_input_schema(json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}}
        }))
        .with_output_schema(json!({"type": "object"}));
    vec![
        (
            list,
            Handler::unary(|ctx, input| async move { list_operations(&ctx, input) }),
        ),
        (
            schema,
            Handler::typed_unary(|ctx, input: SchemaInput| async move {
                operation_schema(&ctx, &input.name)
            }),
        ),
    ]
}

fn list_operations(
    ctx: &Context,
    input: serde_json::Value,
) -> Result<serde_json::Value, CallError> {
    let input: ListInput = if input.is_null() {
        ListInput { q: None }
    } else {
        serde_json::from_value(input).map_err(|e| CallError::invalid_input(e.to_string(), ""))?
    };
    let q = input.q.map(|q| q.to_lowercase());
    let operations = ctx
        .registry()
        .operations()
        .iter()
        .map(|op| op.spec())
        .filter(|spec| spec.visibility == Visibility::External && !is_builtin(&spec.name))
        .filter(|spec| access::may_list(spec, ctx.identity()))
        // Callers without a connection (HTTP, MCP) cannot serve a call back.
        .filter(|spec| ctx.peer_link().is_some() || !ctx.registry().needs_peer(&spec.name))
        .filter(|spec| {
            q.as_deref().is_none_or(|q| {
                spec.name.to_lowercase().contains(q) || spec.description.to_lowercase().contains(q)
            })
        })
        .map(|spec| OperationSummary {
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            op_type: spec.op_type,
            description: spec.description.clone(),
        })
        .collect();
    Ok(serde_json::to_value(ServiceList { operations }).expect("summaries serialize"))
}

fn operation_schema(ctx: &Context, name: &str) -> Result<OperationSpec, CallError> {
    let not_found = || CallError::not_found(format!("no operation `{name}`"));
    let name = OperationName::parse_wire(name).map_err(|_| not_found())?;
    let op = ctx.registry().get(name.as_str()).ok_or_else(not_found)?;
    if op.spec().visibility != Visibility::External {
        return Err(not_found());
    }
    Ok(op.spec().clone())
}
