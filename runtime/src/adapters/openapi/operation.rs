//! One OpenAPI operation (a method on a path) as an alknet operation: its spec, and the
//! [`Route`] that says how a call becomes an HTTP request and the answer an output.
//!
//! - **Name**: `<import>/<operationId>` (dots and slashes separate segments, other characters
//!   become `_`), or `<import>/<method>_<path>` without an `operationId`.
//! - **Kind**: `x-alknet-op-type` when the document has it (alknet's own documents); else a
//!   `text/event-stream` success answer makes a subscription, GET/HEAD/OPTIONS/TRACE a query and
//!   any other method a mutation.
//! - **Input**: one object whose properties are the path, query and header parameters by name,
//!   and the JSON body as `body`. Without parameters the input *is* the body, so importing an
//!   alknet node's document gives the same inputs as calling it.
//! - **Output**: the JSON schema of the success answer (several 2xx: any of them); a text answer
//!   is a string, no content is `null`; for a subscription the schema of one event's data.
//! - **Errors**: every declared 4xx/5xx status is the domain error `HTTP_<status>` (`HTTP_4XX`
//!   for a range) with the answer's body in `details`.
//!
//! What cannot be mapped (a required cookie parameter, a body that is not JSON, a reference
//! into another file) makes the operation skipped, with the pointer and the reason.

use std::collections::{BTreeMap, BTreeSet};

use alknet_spec::{ErrorSpec, OpType, OperationSpec, Visibility, keywords};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::document::Document;

/// How a call of one imported operation is sent and answered.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) method: Method,
    /// The path template (`/items/{item_id}`).
    pub(super) path: String,
    pub(super) params: Vec<Param>,
    pub(super) body: BodyMode,
    pub(super) answer: Answer,
    /// Statuses declared as `HTTP_<status>`.
    pub(super) declared: BTreeSet<u16>,
    /// Status classes declared as `HTTP_4XX` / `HTTP_5XX` (4, 5).
    pub(super) declared_classes: BTreeSet<u16>,
}

/// One parameter, taken from the input property of its name.
#[derive(Debug)]
pub(super) struct Param {
    pub(super) name: String,
    pub(super) location: Location,
    pub(super) style: Style,
    pub(super) explode: bool,
    /// Described by `content` (JSON): the value is sent as its JSON text.
    pub(super) json_text: bool,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Location {
    Path,
    Query,
    Header,
}

/// How a parameter's array or object value is written (OpenAPI `style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// `simple` (path, header) or `form` (query).
    Plain,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

/// Where the JSON body comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyMode {
    None,
    /// The whole input (the operation has no parameters); `null` sends no body when the body
    /// is optional.
    Whole,
    /// The input's `body` property.
    Field,
}

/// What a success answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Json,
    Text,
    Empty,
    EventStream,
}

/// An operation mapped from the document.
pub(super) struct Mapped {
    pub(super) spec: OperationSpec,
    pub(super) route: Route,
}

/// An operation the adapter could not map, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The JSON pointer of the operation in the document (`#/paths/~1pets/post`).
    pub pointer: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The domain error a subscription's `event: error` becomes.
pub const STREAM_ERROR: &str = "STREAM_ERROR";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Maps every operation of `document` under the import `import`.
pub(super) fn map_operations(
    document: &Document,
    import: &str,
    external: bool,
) -> (Vec<Mapped>, Vec<Skipped>) {
    let mut mapped: Vec<Mapped> = Vec::new();
    let mut skipped = Vec::new();
    let mut names = BTreeSet::new();
    let Some(paths) = document.root.get("paths").and_then(Value::as_object) else {
        return (mapped, skipped);
    };
    for (path, item) in paths {
        let item_pointer = format!("#/paths/{}", keywords::escape(path));
        let item = match document.resolve(item, &item_pointer) {
            Ok(item) => item,
            Err(reason) => {
                skipped.push(Skipped {
                    pointer: item_pointer,
                    reason,
                });
                continue;
            }
        };
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let pointer = format!("{item_pointer}/{method}");
            let result = map_operation(document, import, path, method, item, operation, &pointer)
                .and_then(|mut one| {
                    one.spec.visibility = if external {
                        Visibility::External
                    } else {
                        Visibility::Internal
                    };
                    if names.insert(one.spec.name.clone()) {
                        Ok(one)
                    } else {
                        Err(format!(
                            "its name `{}` is taken by another operation of the document",
                            one.spec.name
                        ))
                    }
                });
            match result {
                Ok(one) => mapped.push(one),
                Err(reason) => skipped.push(Skipped { pointer, reason }),
            }
        }
    }
    (mapped, skipped)
}

fn map_operation(
    document: &Document,
    import: &str,
    path: &str,
    method: &str,
    item: &Value,
    operation: &Value,
    pointer: &str,
) -> Result<Mapped, String> {
    let id = match operation.get("operationId").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => format!("{method}_{path}").replace(['/', '{', '}', '.'], "_"),
    };
    let name = super::super::local_name(import, &id)
        .ok_or_else(|| format!("`{id}` cannot be made an operation name"))?;

    // Parameters: the path item's, overridden by the operation's of the same name and place.
    let mut params: BTreeMap<(String, String), (Value, String)> = BTreeMap::new();
    for (owner, owner_pointer) in [
        (item, pointer.rsplit_once('/').unwrap().0),
        (operation, pointer),
    ] {
        let Some(list) = owner.get("parameters").and_then(Value::as_array) else {
            continue;
        };
        for (i, param) in list.iter().enumerate() {
            let here = format!("{owner_pointer}/parameters/{i}");
            let param = document.resolve(param, &here)?;
            let (Some(name), Some(location)) = (
                param.get("name").and_then(Value::as_str),
                param.get("in").and_then(Value::as_str),
            ) else {
                return Err(format!("{here}: a parameter without `name` or `in`"));
            };
            params.insert(
                (location.to_owned(), name.to_owned()),
                (param.clone(), here),
            );
        }
    }

    let mut schemas = document.schemas();
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut route_params = Vec::new();
    for ((location, name), (param, here)) in &params {
        let location = match location.as_str() {
            "path" => Location::Path,
            "query" => Location::Query,
            "header" => {
                // OpenAPI: these three are described elsewhere and ignored as parameters.
                if ["accept", "content-type", "authorization"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    continue;
                }
                Location::Header
            }
            "cookie" if param.get("required") != Some(&Value::Bool(true)) => continue,
            other => {
                return Err(format!(
                    "{here}: a required `{other}` parameter `{name}` (cookies are not forwarded)"
                ));
            }
        };
        // A parameter is described by `schema`, or by `content` with one media type (sent as
        // that media type's text: JSON here).
        let (schema, schema_pointer, json_text) = match (param.get("schema"), param.get("content"))
        {
            (Some(schema), _) => (schema, format!("{here}/schema"), false),
            (None, Some(Value::Object(content))) => {
                match content.iter().find(|(media, _)| is_json(media)) {
                    Some((media, media_object)) => (
                        media_object.get("schema").unwrap_or(&Value::Bool(true)),
                        format!("{here}/content/{}/schema", keywords::escape(media)),
                        true,
                    ),
                    None => {
                        return Err(format!(
                            "{here}: parameter `{name}` is described by a content type that is not JSON"
                        ));
                    }
                }
            }
            _ => return Err(format!("{here}: parameter `{name}` has no schema")),
        };
        let mut schema = schemas.convert(schema, &schema_pointer)?;
        if let (Some(text), Value::Object(map)) = (
            param.get("description").and_then(Value::as_str),
            &mut schema,
        ) {
            map.entry("description").or_insert_with(|| text.into());
        }
        if properties.insert(name.clone(), schema).is_some() || name == "body" {
            return Err(format!(
                "{here}: the parameter name `{name}` is used twice (or is `body`, where the body goes)"
            ));
        }
        if location == Location::Path || param.get("required") == Some(&Value::Bool(true)) {
            required.push(Value::String(name.clone()));
        }
        let style = match param.get("style").and_then(Value::as_str) {
            None | Some("simple" | "form") => Style::Plain,
            Some("spaceDelimited") => Style::SpaceDelimited,
            Some("pipeDelimited") => Style::PipeDelimited,
            Some("deepObject") => Style::DeepObject,
            Some(other) => return Err(format!("{here}: parameter style `{other}`")),
        };
        // `form` (query's default) explodes by default; `simple` does not.
        let explode = param
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(location == Location::Query);
        route_params.push(Param {
            name: name.clone(),
            location,
            style,
            explode,
            json_text,
        });
    }
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
            && !route_params
                .iter()
                .any(|p| p.location == Location::Path && p.name == name)
        {
            return Err(format!("the path parameter `{name}` is not described"));
        }
    }

    // The JSON body.
    let mut body = None;
    if let Some(request_body) = operation.get("requestBody") {
        let here = format!("{pointer}/requestBody");
        let request_body = document.resolve(request_body, &here)?;
        let is_required = request_body.get("required") == Some(&Value::Bool(true));
        let content = request_body.get("content").and_then(Value::as_object);
        match content.and_then(|c| c.iter().find(|(media, _)| is_json(media))) {
            Some((media, media_object)) => {
                let schema = match media_object.get("schema") {
                    Some(schema) => schemas.convert(
                        schema,
                        &format!("{here}/content/{}/schema", keywords::escape(media)),
                    )?,
                    None => json!({}),
                };
                body = Some((schema, is_required));
            }
            None if is_required => {
                let media: Vec<&str> = content
                    .map(|c| c.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(format!(
                    "{here}: the body is {} only, not JSON",
                    media.join(", ")
                ));
            }
            None => {}
        }
    }
    let (input, body_mode) = match (route_params.is_empty(), body) {
        (true, Some((schema, _))) => (schema, BodyMode::Whole),
        (true, None) => (
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            BodyMode::None,
        ),
        (false, body) => {
            let mode = match body {
                Some((schema, is_required)) => {
                    properties.insert("body".into(), schema);
                    if is_required {
                        required.push("body".into());
                    }
                    BodyMode::Field
                }
                None => BodyMode::None,
            };
            (
                json!({
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false
                }),
                mode,
            )
        }
    };
    let input = schemas.finish(input)?;

    // Answers: success outputs and declared errors.
    let responses = operation
        .get("responses")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut successes = Vec::new();
    let mut errors = Vec::new();
    let mut declared = BTreeSet::new();
    let mut declared_classes = BTreeSet::new();
    for (status, response) in &responses {
        let here = format!("{pointer}/responses/{}", keywords::escape(status));
        let response = document.resolve(response, &here)?;
        let upper = status.to_ascii_uppercase();
        if let Some(class) = upper.strip_suffix("XX").and_then(|c| c.parse::<u16>().ok()) {
            match class {
                2 => successes.push((status.clone(), response, here)),
                4 | 5 => {
                    declared_classes.insert(class);
                    errors.push((format!("HTTP_{class}XX"), class * 100, response, here));
                }
                _ => {}
            }
            continue;
        }
        match status.parse::<u16>() {
            Ok(200..=299) => successes.push((status.clone(), response, here)),
            Ok(code @ 400..=599) => {
                declared.insert(code);
                errors.push((format!("HTTP_{code}"), code, response, here));
            }
            _ => {}
        }
    }
    // Exact codes before `2XX`.
    successes.sort_by_key(|(status, _, _)| status.parse::<u16>().unwrap_or(299));

    let mut answer = Answer::Json;
    let mut outputs: Vec<Value> = Vec::new();
    let mut output_schemas = document.schemas();
    for (i, (_, response, here)) in successes.iter().enumerate() {
        let content = response.get("content").and_then(Value::as_object);
        let (kind, schema) = match content {
            None => (Answer::Empty, json!({"type": "null"})),
            Some(content) if content.is_empty() => (Answer::Empty, json!({"type": "null"})),
            Some(content) => {
                if let Some(media) = content.get("text/event-stream") {
                    let schema = event_data_schema(media);
                    let schema = output_schemas
                        .convert(&schema, &format!("{here}/content/text~1event-stream"))?;
                    (Answer::EventStream, schema)
                } else if let Some((media, media_object)) =
                    content.iter().find(|(media, _)| is_json(media))
                {
                    let schema = match media_object.get("schema") {
                        Some(schema) => output_schemas.convert(
                            schema,
                            &format!("{here}/content/{}/schema", keywords::escape(media)),
                        )?,
                        None => json!({}),
                    };
                    (Answer::Json, schema)
                } else if content.keys().any(|media| media.starts_with("text/")) {
                    (Answer::Text, json!({"type": "string"}))
                } else {
                    let media: Vec<&str> = content.keys().map(String::as_str).collect();
                    return Err(format!(
                        "{here}: the answer is {}, not JSON or text",
                        media.join(", ")
                    ));
                }
            }
        };
        if i == 0 {
            answer = kind;
        } else if kind != answer {
            // Other success answers of another kind are not expected: read as the first.
            continue;
        }
        if !outputs.contains(&schema) {
            outputs.push(schema);
        }
    }
    let output = match outputs.len() {
        0 => json!({}),
        1 => outputs.remove(0),
        _ => json!({"anyOf": outputs}),
    };
    let output = output_schemas.finish(output)?;

    let op_type = match operation.get("x-alknet-op-type").and_then(Value::as_str) {
        _ if answer == Answer::EventStream => OpType::Subscription,
        Some("query") => OpType::Query,
        Some("mutation") => OpType::Mutation,
        _ if matches!(method, "get" | "head" | "options" | "trace") => OpType::Query,
        _ => OpType::Mutation,
    };

    let mut spec = OperationSpec::new(&name, op_type)
        .map_err(|e| e.to_string())?
        .with_input_schema(input)
        .with_output_schema(output);
    spec.description = description(operation, method, path);
    spec.deprecated = operation.get("deprecated") == Some(&Value::Bool(true));
    // alknet's own documents carry their access rules: the scopes are kept, as `from_call`
    // keeps them, so this node checks them against its own identities too. A resource rule
    // needs the input's resource pointer, which the document does not carry: that check stays
    // with the service (which applies it to this node's identity).
    if let Some(access) = operation.get("x-alknet-access") {
        let mut access: alknet_spec::AccessControl = serde_json::from_value(access.clone())
            .map_err(|e| format!("{pointer}/x-alknet-access: {e}"))?;
        access.resource_type = None;
        access.resource_action = None;
        spec.access_control = access;
    }
    for (code, status, response, here) in errors {
        let text = response
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut error = ErrorSpec::new(
            code,
            format!(
                "HTTP {status}{}{text}; `details` holds the answer's body",
                if text.is_empty() { "" } else { ": " }
            ),
        )
        .with_http_status(status);
        if let Some((media, media_object)) = response
            .get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.iter().find(|(media, _)| is_json(media)))
            && let Some(schema) = media_object.get("schema")
        {
            let mut converter = document.schemas();
            let schema = converter.convert(
                schema,
                &format!("{here}/content/{}/schema", keywords::escape(media)),
            )?;
            error = error.with_schema(converter.finish(schema)?);
        }
        spec = spec.with_error(error);
    }
    // An alknet stream that resumes after `Last-Event-ID` (its own documents say so).
    if op_type == OpType::Subscription
        && operation.get("x-alknet-resumable") == Some(&Value::Bool(true))
    {
        spec = spec.resumable();
    }
    if op_type == OpType::Subscription {
        spec = spec.with_error(ErrorSpec::new(
            STREAM_ERROR,
            "the stream ended with `event: error`; `details` holds its data",
        ));
    }
    spec.validate().map_err(|e| e.to_string())?;
    Ok(Mapped {
        spec,
        route: Route {
            method: method.to_ascii_uppercase().parse().map_err(|_| "method")?,
            path: path.to_owned(),
            params: route_params,
            body: body_mode,
            answer,
            declared,
            declared_classes,
        },
    })
}

/// `application/json`, `application/problem+json`, `application/json; charset=utf-8`.
fn is_json(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim();
    essence == "application/json" || essence.ends_with("+json")
}

/// The schema of one event's data: OpenAPI 3.2's `itemSchema` (its `data`'s `contentSchema`
/// when it describes the parsed event, as alknet's 3.2 document does); in 3.1 the `contentSchema`
/// of a `data` property, or else the `schema` itself, read as generators read it (the type of
/// one item, as alknet's 3.1 document writes it) unless it only says "a string" — that
/// describes the raw stream (as 3.0 documents do), which says nothing about the items.
fn event_data_schema(media: &Value) -> Value {
    if let Some(schema) = media.get("itemSchema") {
        if let Some(data) = schema.pointer("/properties/data/contentSchema") {
            return data.clone();
        }
        return schema.clone();
    }
    if let Some(data) = media.pointer("/schema/properties/data/contentSchema") {
        return data.clone();
    }
    match media.get("schema") {
        Some(schema) if schema.get("type") != Some(&json!("string")) => schema.clone(),
        _ => json!({}),
    }
}

fn description(operation: &Value, method: &str, path: &str) -> String {
    let summary = operation
        .get("summary")
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = operation
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    // A summary is often the description's first line (alknet's documents, many others).
    match (summary.trim(), text.trim()) {
        ("", "") => format!("{} {path}", method.to_ascii_uppercase()),
        (summary, "") => summary.to_owned(),
        (summary, text) if summary.is_empty() || text.starts_with(summary) => text.to_owned(),
        (summary, text) => format!("{summary}\n\n{text}"),
    }
}
