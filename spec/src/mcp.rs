//! The MCP projection of a spec bundle (design §8): the tools an MCP client sees.
//!
//! External queries and mutations become tools named after the operation with `/` replaced by
//! `.`; subscriptions are not tools. `outputSchema` must describe an object, so a non-object
//! output is wrapped as `{"result": <output>}` (and the tool result is wrapped the same way).
//! Queries carry `readOnlyHint`. The runtime's MCP server lists these very tools (filtered per
//! caller), and `alknet-codegen mcp` prints them.

use serde_json::{Value, json};

use crate::bundle::SpecBundle;
use crate::spec::{OpType, OperationSpec, Visibility};

/// The MCP tool name of an operation: `demo/add` → `demo.add`.
pub fn tool_name(operation: &str) -> String {
    operation.replace('/', ".")
}

/// The operation behind a tool name, if it has the shape of one.
pub fn operation_name(tool: &str) -> String {
    tool.replace('.', "/")
}

/// Whether an output schema describes an object (so it can be an MCP `outputSchema` as is).
pub fn is_object_schema(schema: &Value) -> bool {
    schema.get("type") == Some(&json!("object"))
}

/// Whether `spec` becomes a tool at all: external queries and mutations.
pub fn is_tool(spec: &OperationSpec) -> bool {
    spec.visibility == Visibility::External && spec.op_type != OpType::Subscription
}

/// An input schema as a tool's `inputSchema`, which MCP requires to be an object schema.
fn input_schema(spec: &OperationSpec) -> Value {
    if is_object_schema(&spec.input_schema) {
        spec.input_schema.clone()
    } else {
        // Inputs that are not objects are passed as {"input": …}.
        json!({
            "type": "object",
            "required": ["input"],
            "properties": {"input": spec.input_schema}
        })
    }
}

/// Whether the tool wraps the operation's input as `{"input": …}`.
pub fn wraps_input(spec: &OperationSpec) -> bool {
    !is_object_schema(&spec.input_schema)
}

/// The tool of one operation, as MCP's `tools/list` returns it.
pub fn tool(spec: &OperationSpec) -> Value {
    let output = if is_object_schema(&spec.output_schema) {
        spec.output_schema.clone()
    } else {
        let mut wrapped = json!({
            "type": "object",
            "required": ["result"],
            "properties": {"result": spec.output_schema}
        });
        // Keep shared definitions at the root, where their `#/$defs/…` references point.
        if let Some(defs) = spec.output_schema.get("$defs") {
            wrapped["$defs"] = defs.clone();
            wrapped["properties"]["result"]
                .as_object_mut()
                .map(|o| o.remove("$defs"));
        }
        wrapped
    };
    let mut input = input_schema(spec);
    if wraps_input(spec)
        && let Some(defs) = spec.input_schema.get("$defs")
    {
        input["$defs"] = defs.clone();
        input["properties"]["input"]
            .as_object_mut()
            .map(|o| o.remove("$defs"));
    }
    let description = if spec.description.is_empty() {
        spec.name.clone()
    } else {
        spec.description.clone()
    };
    json!({
        "name": tool_name(&spec.name),
        "title": spec.name,
        "description": description,
        "inputSchema": input,
        "outputSchema": output,
        "annotations": {
            "readOnlyHint": spec.op_type == OpType::Query,
            "destructiveHint": spec.op_type == OpType::Mutation,
            "openWorldHint": false
        }
    })
}

/// The tools of a bundle: `{"tools": [...]}`, in name order.
pub fn tools(bundle: &SpecBundle) -> Value {
    json!({
        "tools": bundle.operations.iter().filter(|s| is_tool(s)).map(tool).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_follow_the_design() {
        let bundle = SpecBundle::new([
            OperationSpec::new("demo/add", OpType::Query)
                .unwrap()
                .with_description("Adds.")
                .with_input_schema(json!({"type": "object"}))
                .with_output_schema(json!({"type": "object"})),
            OperationSpec::new("demo/echo", OpType::Mutation)
                .unwrap()
                .with_output_schema(json!({"type": "string", "$defs": {"X": {}}})),
            OperationSpec::new("demo/ticks", OpType::Subscription).unwrap(),
            OperationSpec::new("demo/secret", OpType::Query)
                .unwrap()
                .with_visibility(Visibility::Internal),
        ])
        .unwrap();
        let tools = tools(&bundle);
        let tools = tools["tools"].as_array().unwrap();
        let names: Vec<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["demo.add", "demo.echo"]);
        assert_eq!(tools[0]["annotations"]["readOnlyHint"], true);
        assert_eq!(tools[1]["annotations"]["readOnlyHint"], false);
        assert_eq!(
            tools[1]["outputSchema"]["properties"]["result"]["type"],
            "string"
        );
        assert!(tools[1]["outputSchema"]["$defs"].get("X").is_some());
        assert_eq!(tools[1]["inputSchema"]["type"], "object");
        assert_eq!(tools[1]["description"], "demo/echo");
        assert_eq!(operation_name("demo.add"), "demo/add");
    }
}
