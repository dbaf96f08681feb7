//! The OpenAPI 3.1 projection of a spec bundle (design §7), and its 3.0.3 ([`v3_0`]) and 3.2
//! ([`v3_2`]) variants.
//!
//! One `POST /ops/{name}` path per external operation, with its real input, output and error
//! schemas; security from `access_control`; subscriptions answer `text/event-stream`. The gateway
//! routes (`/call`, `/batch`, `/subscribe`, `/search`, `/schema`, `/healthz`) are described too.
//! The runtime serves exactly this document at `/openapi.json`, and `alknet-codegen openapi`
//! prints it.
//!
//! Schemas are self-contained in the IR (`$defs` inside each schema). In an OpenAPI document a
//! `#/…` reference resolves against the document, so every `$defs` entry is hoisted into
//! `components/schemas` and its references rewritten; two different schemas with the same name
//! get distinct component names.

pub mod v3_0;
pub mod v3_2;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::bundle::SpecBundle;
use crate::keywords;
use crate::spec::{OpType, OperationSpec, Visibility};

/// What the document says about the service as a whole.
#[derive(Debug, Clone)]
pub struct OpenApiInfo {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// `info.description`.
    pub description: String,
    /// `servers`: the URLs the service is reached at (none: the document says nothing, and
    /// tools assume the host they read it from).
    pub servers: Vec<String>,
}

impl Default for OpenApiInfo {
    fn default() -> Self {
        Self {
            title: "alknet node".into(),
            version: "1.0.0".into(),
            description: String::new(),
            servers: Vec::new(),
        }
    }
}

/// HTTP status for a protocol error code (design §7). `FORBIDDEN` is 403 here; the gateway
/// answers 401 when no credentials were sent.
pub fn protocol_status(code: &str) -> u16 {
    match code {
        "NOT_FOUND" => 404,
        "FORBIDDEN" => 403,
        "INVALID_INPUT" => 422,
        "INVALID_OPERATION_TYPE" => 400,
        "TIMEOUT" => 504,
        _ => 500,
    }
}

/// The path of an operation's typed route.
pub fn operation_path(name: &str) -> String {
    format!("/ops/{name}")
}

/// The OpenAPI `operationId` of an operation: its name with `/` replaced by `.`.
pub fn operation_id(name: &str) -> String {
    name.replace('/', ".")
}

/// Hoists `$defs` into a shared component table, rewriting references.
#[derive(Default)]
struct Components {
    schemas: BTreeMap<String, Value>,
}

impl Components {
    /// Moves `schema`'s `$defs` into the components (under free names) and rewrites every
    /// `#/$defs/X` inside it to the component it became.
    fn adopt(&mut self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        objectify_boolean_schemas(&mut schema);
        let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|o| o.remove("$defs"))
        else {
            return schema;
        };
        let mut renames = BTreeMap::new();
        for name in defs.keys() {
            renames.insert(name.clone(), self.free_name(name, &defs[name]));
        }
        for (name, mut def) in defs {
            rewrite_refs(&mut def, &renames);
            self.schemas.insert(renames[&name].clone(), def);
        }
        rewrite_refs(&mut schema, &renames);
        schema
    }

    fn free_name(&self, wanted: &str, schema: &Value) -> String {
        let base: String = wanted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        // The same schema under the same name is shared; a different one gets a suffix. (Its
        // refs are compared before rewriting, which is conservative: at worst a duplicate.)
        while let Some(existing) = self.schemas.get(&name) {
            if existing == schema {
                break;
            }
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }
}

/// `true` → `{}` and `false` → `{"not": {}}` wherever a schema stands: equivalent, and accepted
/// by every OpenAPI tool (some reject boolean schemas although 3.1 allows them). Except
/// `additionalProperties: false`, which stays as it is: every tool reads it (it is OpenAPI 3.0's
/// own form), and generators read `{"not": {}}` there as an open object.
fn objectify_boolean_schemas(schema: &mut Value) {
    match schema {
        Value::Bool(true) => *schema = json!({}),
        Value::Bool(false) => *schema = json!({"not": {}}),
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let key = key.as_str();
                if keywords::MAP.contains(&key) {
                    if let Value::Object(children) = child {
                        children.values_mut().for_each(objectify_boolean_schemas);
                    }
                } else if keywords::LIST.contains(&key) {
                    if let Value::Array(children) = child {
                        children.iter_mut().for_each(objectify_boolean_schemas);
                    }
                } else if key == "additionalProperties" && *child == Value::Bool(false) {
                    // Closed objects stay closed for generators.
                } else if keywords::SINGLE.contains(&key) {
                    objectify_boolean_schemas(child);
                }
            }
        }
        _ => {}
    }
}

fn rewrite_refs(value: &mut Value, renames: &BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref")
                && let Some(name) = reference.strip_prefix("#/$defs/")
                && let Some(renamed) = renames.get(name)
            {
                *reference = format!("#/components/schemas/{renamed}");
            }
            for (key, child) in map.iter_mut() {
                // Property names and enum/const values are data, not schemas.
                if key != "const" && key != "enum" && key != "examples" && key != "default" {
                    rewrite_refs(child, renames);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, renames)),
        _ => {}
    }
}

fn call_error_schema() -> Value {
    json!({
        "type": "object",
        "description": "The `call.error` payload.",
        "required": ["code", "message", "retryable"],
        "properties": {
            "code": {"type": "string", "description": "A protocol code or a declared domain code."},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
            "details": {"description": "Structured details (the failing JSON pointer for INVALID_INPUT)."}
        }
    })
}

fn error_ref() -> Value {
    json!({"$ref": "#/components/schemas/CallError"})
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The success answer of a subscription: a `text/event-stream` body whose `schema` is the
/// schema of one item — the `data:` of each event — which is how SSE-aware generators read it
/// (hey-api types the items of its stream with it; openapi-typescript gives it as the content
/// type). OpenAPI 3.1 has no keyword that says "per event" (3.2's `itemSchema` does, and no
/// generator reads it yet), so the framing — ids, the `completed` and `error` events, resuming —
/// is in the response's description.
fn sse_response(item: Value, resumable: Option<bool>) -> Value {
    let resume = match resumable {
        Some(true) => {
            "A client whose connection dropped sends the last id it saw as `Last-Event-ID` and the stream goes on after that item (this subscription is resumable)."
        }
        Some(false) => {
            "This subscription is not resumable: a numeric `Last-Event-ID` is refused (422)."
        }
        None => {
            "A numeric `Last-Event-ID` resumes after that item when the operation is resumable (`x-alknet-resumable`) and is refused (422) otherwise."
        }
    };
    json!({
        "description": format!("The items, as Server-Sent Events: the schema is the `data:` of one event (the JSON of one item), sent with an increasing `id:` (1 for the first item). After the last item comes `event: completed` (data `{{}}`), or `event: error` with a `CallError` as data, both with `id: end`; an EventSource reconnecting with `Last-Event-ID: end` gets 204 and stops. {resume}"),
        "content": {"text/event-stream": {"schema": item}}
    })
}

/// The responses of one operation: its output, its declared errors by status, protocol errors.
fn responses(spec: &OperationSpec, output: Value, components: &mut Components) -> Value {
    let mut responses = Map::new();
    let ok = if spec.op_type == OpType::Subscription {
        sse_response(output, Some(spec.resumable))
    } else {
        json!({"description": "The output.", "content": json_content(output)})
    };
    responses.insert("200".into(), ok);

    let mut by_status: BTreeMap<u16, Vec<Value>> = BTreeMap::new();
    let mut described: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for error in &spec.error_schemas {
        let status = error.http_status.unwrap_or(500);
        let mut schema = json!({
            "allOf": [error_ref()],
            "properties": {"code": {"const": error.code}}
        });
        if let Some(details) = &error.schema {
            schema["properties"]["details"] = components.adopt(details);
        }
        by_status.entry(status).or_default().push(schema);
        described
            .entry(status)
            .or_default()
            .push(if error.description.is_empty() {
                format!("`{}`", error.code)
            } else {
                format!("`{}`: {}", error.code, error.description)
            });
    }
    let mut protocol = vec![
        (
            400,
            "Not JSON, or the wrong kind of operation for this route (INVALID_OPERATION_TYPE).",
        ),
        (404, "No such operation (NOT_FOUND)."),
        (
            422,
            "The input does not match the input schema (INVALID_INPUT); `details.pointer` names the failing place.",
        ),
        (500, "An internal error (INTERNAL)."),
        (504, "The deadline expired (TIMEOUT)."),
    ];
    if !spec.access_control.is_public() {
        protocol.push((401, "Authentication required (FORBIDDEN)."));
        protocol.push((403, "Not allowed (FORBIDDEN)."));
    }
    for (status, text) in protocol {
        by_status.entry(status).or_default();
        described
            .entry(status)
            .or_default()
            .insert(0, text.to_owned());
    }
    for (status, mut schemas) in by_status {
        let schema = match schemas.len() {
            0 => error_ref(),
            1 => schemas.remove(0),
            _ => {
                schemas.push(error_ref());
                json!({"anyOf": schemas})
            }
        };
        responses.insert(
            status.to_string(),
            json!({
                "description": described[&status].join(" "),
                "content": json_content(schema)
            }),
        );
    }
    Value::Object(responses)
}

/// Whether `{}` is a valid input, judged from the top of the schema (following one local
/// `$ref`): no `type` other than object, no `required` properties.
fn accepts_empty_object(schema: &Value) -> bool {
    let schema = match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => schema
            .get("$defs")
            .and_then(|defs| defs.get(name))
            .unwrap_or(schema),
        None => schema,
    };
    match schema {
        Value::Bool(accepts) => *accepts,
        Value::Object(map) => {
            let type_ok = match map.get("type") {
                None => true,
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
                Some(_) => false,
            };
            let nothing_required = map
                .get("required")
                .and_then(Value::as_array)
                .is_none_or(|r| r.is_empty());
            type_ok && nothing_required
        }
        _ => false,
    }
}

fn security(spec: &OperationSpec) -> Option<Value> {
    (!spec.access_control.is_public()).then(|| json!([{"bearerAuth": []}]))
}

fn access_note(spec: &OperationSpec) -> String {
    let access = &spec.access_control;
    let mut notes = Vec::new();
    if !access.required_scopes.is_empty() {
        notes.push(format!(
            "requires the scopes {}",
            access.required_scopes.join(", ")
        ));
    }
    if let Some(any) = &access.required_scopes_any {
        notes.push(format!("requires one of the scopes {}", any.join(", ")));
    }
    if let (Some(kind), Some(action)) = (&access.resource_type, &access.resource_action) {
        notes.push(format!(
            "checks `{action}` on the {kind} named at `{}`",
            spec.resource_id_path.as_deref().unwrap_or("")
        ));
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("\n\nAccess: {}.", notes.join("; "))
    }
}

/// The operation's description and access note; an operation without a description is
/// described by its kind and name, so that every operation has one.
fn operation_description(spec: &OperationSpec) -> String {
    let own = if spec.description.trim().is_empty() {
        format!("The `{}` {}.", spec.name, spec.op_type.as_str())
    } else {
        spec.description.clone()
    };
    format!("{own}{}", access_note(spec))
}

fn operation_object(spec: &OperationSpec, components: &mut Components) -> Value {
    let input = components.adopt(&spec.input_schema);
    let output = components.adopt(&spec.output_schema);
    let mut operation = json!({
        "operationId": operation_id(&spec.name),
        "summary": spec.description.lines().next().unwrap_or(&spec.name),
        "description": operation_description(spec),
        "tags": [spec.namespace],
        // An empty body is the empty object: the body is optional exactly when `{}` is valid.
        "requestBody": {
            "required": !accepts_empty_object(&spec.input_schema),
            "description": "The input; an empty body is `{}`.",
            "content": json_content(input)
        },
        "responses": responses(spec, output, components),
        "x-alknet-op-type": spec.op_type.as_str(),
    });
    if let Some(security) = security(spec) {
        operation["security"] = security;
    }
    if !spec.access_control.is_public() {
        operation["x-alknet-access"] =
            serde_json::to_value(&spec.access_control).expect("serializes");
    }
    if spec.deprecated {
        operation["deprecated"] = json!(true);
    }
    if spec.resumable {
        operation["x-alknet-resumable"] = json!(true);
    }
    operation
}

fn gateway_paths() -> Value {
    let call_body = json!({
        "type": "object",
        "required": ["operation"],
        "properties": {
            "operation": {"type": "string", "description": "Operation name, e.g. `demo/add`."},
            "input": {"description": "The operation's input."}
        }
    });
    let error_response = |description: &str| json!({"description": description, "content": json_content(error_ref())});
    let errors = |extra: &[(&str, &str)]| {
        let mut map = Map::new();
        for (status, text) in [
            (
                "400",
                "Not JSON, bad parameters, or the wrong kind of operation.",
            ),
            ("401", "Authentication required."),
            ("403", "Not allowed."),
            ("404", "No such operation."),
            ("422", "Invalid input."),
            ("500", "Internal error."),
            ("504", "Deadline expired."),
        ]
        .iter()
        .chain(extra)
        {
            map.insert((*status).to_owned(), error_response(text));
        }
        Value::Object(map)
    };
    let with = |ok: Value, extra: &[(&str, &str)]| {
        let mut responses = errors(extra);
        responses["200"] = ok;
        responses
    };
    json!({
        "/call": {"post": {
            "operationId": "gateway.call",
            "summary": "Call any query or mutation by name.",
            "description": "The generic route: the same call as `POST /ops/{name}`, with the operation named in the body. Subscriptions are refused here (400, INVALID_OPERATION_TYPE): use `/subscribe`.",
            "tags": ["gateway"],
            "requestBody": {"required": true, "content": json_content(call_body.clone())},
            "responses": {
                "200": {"description": "The output.", "content": json_content(json!({}))},
                "400": error_response("Not JSON, or not a query/mutation."),
                "401": error_response("Authentication required."),
                "403": error_response("Not allowed."),
                "404": error_response("No such operation."),
                "422": error_response("Invalid input."),
                "500": error_response("Internal error."),
                "504": error_response("Deadline expired.")
            }
        }},
        "/batch": {"post": {
            "operationId": "gateway.batch",
            "summary": "Several calls; answers in order.",
            "description": "Up to 1000 queries and mutations in one request (413 beyond), run concurrently; the answers come in request order, each `{\"output\"}` or `{\"error\"}`. One failing call does not fail the others.",
            "tags": ["gateway"],
            "requestBody": {"required": true, "content": json_content(json!({"type": "array", "items": call_body.clone()}))},
            "responses": with(json!({"description": "One answer per call, in order.", "content": json_content(json!({
                "type": "array",
                "items": {"oneOf": [
                    {"type": "object", "required": ["output"], "properties": {"output": {}}},
                    {"type": "object", "required": ["error"], "properties": {"error": error_ref()}}
                ]}
            }))}), &[("413", "More calls than a batch may hold.")])
        }},
        "/subscribe": {
            "post": {
                "operationId": "gateway.subscribe",
                "summary": "Subscribe to any subscription by name.",
            "description": "The generic subscription route, answered with Server-Sent Events (see `POST /ops/{name}` of each subscription for its item type).",
                "tags": ["gateway"],
                "requestBody": {"required": true, "content": json_content(call_body)},
                "responses": with(sse_response(json!({}), None), &[])
            },
            "get": {
                "operationId": "gateway.subscribeGet",
                "summary": "Subscribe with query parameters (for EventSource).",
            "description": "For `EventSource`, which can only GET: the operation and its input (JSON text) in the query. Answered with Server-Sent Events.",
                "tags": ["gateway"],
                "parameters": [
                    {"name": "operation", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "input", "in": "query", "required": false, "description": "The input as JSON text, e.g. `{\"count\":3}` (left out: `{}`). A string, so that every generator passes it as it is; text that is not JSON is refused (400) once the operation is found.", "schema": {"type": "string"}}
                ],
                "responses": with(sse_response(json!({}), None), &[])
            }
        },
        "/search": {"get": {
            "operationId": "gateway.search",
            "summary": "List the operations you may call (services/list).",
            "description": "The operations this caller may see, with their kinds and descriptions; `q` filters by name and description.",
            "tags": ["gateway"],
            "parameters": [{"name": "q", "in": "query", "required": false, "schema": {"type": "string"}}],
            "responses": with(json!({"description": "The operations.", "content": json_content(json!({
                "type": "object",
                "required": ["operations"],
                "properties": {"operations": {"type": "array", "items": {"type": "object"}}}
            }))}), &[])
        }},
        "/schema": {"get": {
            "operationId": "gateway.schema",
            "summary": "The OperationSpec of one operation (services/schema).",
            "description": "The full OperationSpec (input, output and error schemas, access control) of one operation this caller may see.",
            "tags": ["gateway"],
            "parameters": [{"name": "name", "in": "query", "required": true, "schema": {"type": "string"}}],
            "responses": with(json!({"description": "The spec.", "content": json_content(json!({"type": "object"}))}), &[])
        }},
        "/healthz": {"get": {
            "operationId": "gateway.health",
            "summary": "Liveness.",
            "description": "Answers `ok` while the node serves.",
            "tags": ["gateway"],
            "responses": {"200": {"description": "`ok`", "content": {"text/plain": {"schema": {"type": "string"}}}}}
        }}
    })
}

/// The OpenAPI 3.1 document of `bundle`'s external operations and the gateway routes.
pub fn openapi_document(bundle: &SpecBundle, info: &OpenApiInfo) -> Value {
    let mut components = Components::default();
    components
        .schemas
        .insert("CallError".into(), call_error_schema());
    let mut paths = Map::new();
    for spec in &bundle.operations {
        if spec.visibility != Visibility::External {
            continue;
        }
        paths.insert(
            operation_path(&spec.name),
            json!({"post": operation_object(spec, &mut components)}),
        );
    }
    if let Value::Object(gateway) = gateway_paths() {
        paths.extend(gateway);
    }
    // Every tag an operation uses is declared, namespaces first.
    let namespaces: std::collections::BTreeSet<&str> = bundle
        .operations
        .iter()
        .filter(|spec| spec.visibility == Visibility::External)
        .map(|spec| spec.namespace.as_str())
        .collect();
    let mut tags: Vec<Value> = namespaces
        .into_iter()
        .map(|namespace| json!({"name": namespace, "description": format!("The operations of the `{namespace}` namespace.")}))
        .collect();
    tags.push(json!({"name": "gateway", "description": "Routes that reach any operation by name, and discovery."}));
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": info.title, "version": info.version},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {"bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An alknet token (`alknet token new`); the same identities as on QUIC."
            }}
        }
    });
    if !info.description.is_empty() {
        document["info"]["description"] = json!(info.description);
    }
    if !info.servers.is_empty() {
        document["servers"] = info.servers.iter().map(|url| json!({"url": url})).collect();
    }
    document
}

/// The OpenAPI 3.0.3 variant of [`openapi_document`] ([`v3_0`] says what changes).
pub fn openapi_3_0_document(bundle: &SpecBundle, info: &OpenApiInfo) -> Value {
    v3_0::downgrade(&openapi_document(bundle, info))
}

/// The OpenAPI 3.2 variant of [`openapi_document`] ([`v3_2`] says what changes).
pub fn openapi_3_2_document(bundle: &SpecBundle, info: &OpenApiInfo) -> Value {
    v3_2::upgrade(&openapi_document(bundle, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessControl, ErrorSpec};

    fn bundle() -> SpecBundle {
        let item = json!({
            "type": "object",
            "properties": {"inner": {"$ref": "#/$defs/Inner"}},
            "$defs": {"Inner": {"type": "object", "properties": {"x": {"type": "integer"}}}}
        });
        let other_inner = json!({
            "type": "object",
            "properties": {"inner": {"$ref": "#/$defs/Inner"}},
            "$defs": {"Inner": {"type": "string"}}
        });
        SpecBundle::new([
            OperationSpec::new("a/get", OpType::Query)
                .unwrap()
                .with_input_schema(item.clone()),
            OperationSpec::new("a/other", OpType::Mutation)
                .unwrap()
                .with_input_schema(other_inner)
                .with_error(
                    ErrorSpec::new("BUSY", "busy")
                        .with_http_status(409)
                        .with_schema(json!({"type": "object"})),
                )
                .with_access(AccessControl {
                    required_scopes: vec!["admin".into()],
                    ..Default::default()
                }),
            OperationSpec::new("a/watch", OpType::Subscription)
                .unwrap()
                .with_output_schema(item),
            OperationSpec::new("a/hidden", OpType::Query)
                .unwrap()
                .with_visibility(Visibility::Internal),
        ])
        .unwrap()
    }

    #[test]
    fn one_path_per_external_operation_with_hoisted_schemas() {
        let doc = openapi_document(&bundle(), &OpenApiInfo::default());
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/ops/a/get") && paths.contains_key("/ops/a/watch"));
        assert!(!paths.contains_key("/ops/a/hidden"));
        let get = &doc["paths"]["/ops/a/get"]["post"];
        assert_eq!(get["operationId"], "a.get");
        let input = &get["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            input["properties"]["inner"]["$ref"],
            "#/components/schemas/Inner"
        );
        assert!(input.get("$defs").is_none());
        // A different schema under the same name gets its own component.
        let other = &doc["paths"]["/ops/a/other"]["post"];
        let other_input = &other["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            other_input["properties"]["inner"]["$ref"],
            "#/components/schemas/Inner_2"
        );
        assert_eq!(doc["components"]["schemas"]["Inner_2"]["type"], "string");
        // Declared errors, security.
        assert_eq!(other["security"], json!([{"bearerAuth": []}]));
        assert_eq!(
            other["responses"]["409"]["content"]["application/json"]["schema"]["properties"]["code"]
                ["const"],
            "BUSY"
        );
        assert!(other["responses"].get("401").is_some());
        assert!(get["responses"].get("401").is_none());
        // Subscriptions answer SSE with the item schema.
        let watch = &doc["paths"]["/ops/a/watch"]["post"]["responses"]["200"];
        let item = &watch["content"]["text/event-stream"]["schema"];
        assert!(
            watch["description"]
                .as_str()
                .unwrap()
                .contains("event: completed")
        );
        assert_eq!(
            item["properties"]["inner"]["$ref"],
            "#/components/schemas/Inner"
        );
        assert!(doc["paths"].get("/call").is_some());
    }
}
