//! The OpenAPI 3.0.3 variant of the 3.1 document, for tools that read only 3.0 (progenitor,
//! openapiv3-based tools, older generators).
//!
//! OpenAPI 3.0's schemas are a subset of JSON Schema draft-05 with `nullable`, so the
//! conversion is lossy in known ways; the node still validates every input against the full
//! 2020-12 schema, so nothing a 3.0 client sends is accepted that the 3.1 document forbids.
//!
//! | 3.1 | 3.0.3 |
//! |---|---|
//! | `type: [T, "null"]` | `type: T, nullable: true` |
//! | an `anyOf`/`oneOf` member `{"type": "null"}` | the member left out, `nullable: true` beside the `anyOf` (¹) |
//! | `type: [A, B]` | `anyOf: [{type: A}, {type: B}]` |
//! | `const: v` | `enum: [v]` |
//! | numeric `exclusiveMinimum: n` | `minimum: n, exclusiveMinimum: true` (same for maximum) |
//! | `examples: [v, …]` | `example: v` |
//! | `$ref` with sibling keywords | `allOf: [{$ref}]` with the siblings |
//! | `prefixItems: [A, B]` | `items: {anyOf: [A, B]}` with the tuple's length |
//! | boolean schema `true` / `false` | `{}` / `{not: {}}` |
//! | keywords 3.0 has not (`contentSchema`, `dependentRequired`, `if`, `patternProperties`, …) | left out |
//! | a subscription's `text/event-stream` item schema | `{type: string}`: the raw stream |
//! | an operation's declared error bodies | `CallError` (the same shape; one error type per operation, as generators want) |
//!
//! (¹) 3.0.3's text gives `nullable` effect only beside `type`, and no `type` fits a union of
//! references; `anyOf: [T], nullable: true` is the form 3.0 generators (progenitor, typify,
//! openapi-python-client) read as "an optional T", so that is what is written. Linters that
//! follow the text to the letter (redocly's `nullable-type-sibling`) flag it.

use serde_json::{Map, Value, json};

use crate::keywords;

/// The keywords an OpenAPI 3.0 Schema Object may hold (besides `x-` extensions).
const SCHEMA_KEYWORDS: &[&str] = &[
    "$ref",
    "title",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "type",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "items",
    "properties",
    "additionalProperties",
    "description",
    "format",
    "default",
    "nullable",
    "discriminator",
    "readOnly",
    "writeOnly",
    "xml",
    "externalDocs",
    "example",
    "deprecated",
];

/// The 3.0.3 variant of an OpenAPI 3.1 document made by [`super::openapi_document`] (with or
/// without the gateway's `servers`).
pub fn downgrade(document: &Value) -> Value {
    let mut document = document.clone();
    document["openapi"] = json!("3.0.3");
    if let Some(map) = document.as_object_mut() {
        map.remove("jsonSchemaDialect");
        map.remove("webhooks");
    }
    if let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") {
        schemas.values_mut().for_each(schema);
    }
    if let Some(Value::Object(paths)) = document.get_mut("paths") {
        for item in paths.values_mut() {
            let Value::Object(item) = item else { continue };
            for (method, operation) in item.iter_mut() {
                if method != "parameters" {
                    self::operation(operation);
                }
            }
        }
    }
    drop_unused_schemas(&mut document);
    document
}

/// Leaves out the components no path reaches any more (the details schemas of declared
/// errors, now that every error body is a `CallError`).
fn drop_unused_schemas(document: &mut Value) {
    const PREFIX: &str = "#/components/schemas/";
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref")
                    && let Some(name) = target.strip_prefix(PREFIX)
                {
                    found.push(name.to_owned());
                }
                map.values().for_each(|child| references(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| references(child, found)),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    references(&document["paths"], &mut pending);
    let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") else {
        return;
    };
    let mut reached = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if reached.insert(name.clone())
            && let Some(schema) = schemas.get(&name)
        {
            references(schema, &mut pending);
        }
    }
    schemas.retain(|name, _| reached.contains(name));
}

fn operation(operation: &mut Value) {
    if let Some(Value::Array(parameters)) = operation.get_mut("parameters") {
        for parameter in parameters {
            if let Some(parameter_schema) = parameter.get_mut("schema") {
                schema(parameter_schema);
            }
            media_types(parameter.get_mut("content"));
        }
    }
    media_types(operation.pointer_mut("/requestBody/content"));
    let Some(Value::Object(responses)) = operation.get_mut("responses") else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        let is_error = !status.starts_with('2');
        let Some(Value::Object(content)) = response.get_mut("content") else {
            continue;
        };
        for (media_type, object) in content.iter_mut() {
            if media_type == "text/event-stream" {
                object["schema"] = json!({
                    "type": "string",
                    "description": "The raw event stream: OpenAPI 3.0 cannot type its events (the OpenAPI 3.1 document, `/openapi.json`, gives the item schema)."
                });
            } else if is_error && media_type == "application/json" {
                // Generators want one error type per operation; every error is a CallError.
                object["schema"] = json!({"$ref": "#/components/schemas/CallError"});
            } else if let Some(body) = object.get_mut("schema") {
                schema(body);
            }
        }
    }
}

fn media_types(content: Option<&mut Value>) {
    if let Some(Value::Object(content)) = content {
        for object in content.values_mut() {
            if let Some(body) = object.get_mut("schema") {
                schema(body);
            }
        }
    }
}

/// Rewrites one schema (and its subschemas) into OpenAPI 3.0's dialect.
fn schema(value: &mut Value) {
    let map = match value {
        Value::Bool(true) => {
            *value = json!({});
            return;
        }
        Value::Bool(false) => {
            *value = json!({"not": {}});
            return;
        }
        Value::Object(map) => map,
        _ => return,
    };
    // Subschemas first, so nullability folded below sees converted members.
    for (key, child) in map.iter_mut() {
        let key = key.as_str();
        if keywords::MAP.contains(&key) {
            if let Value::Object(children) = child {
                children.values_mut().for_each(schema);
            }
        } else if keywords::LIST.contains(&key) {
            if let Value::Array(children) = child {
                children.iter_mut().for_each(schema);
            }
        } else if key == "additionalProperties" && child.is_boolean() {
            // 3.0 allows a boolean here.
        } else if keywords::SINGLE.contains(&key) {
            schema(child);
        }
    }
    let mut nullable = false;

    if let Some(constant) = map.remove("const")
        && !map.contains_key("enum")
    {
        map.insert("enum".into(), json!([constant]));
    }
    if let Some(Value::Array(examples)) = map.remove("examples")
        && let Some(first) = examples.into_iter().next()
        && !map.contains_key("example")
    {
        map.insert("example".into(), first);
    }
    for (exclusive, inclusive) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(bound) = map.get(exclusive).filter(|b| b.is_number()).cloned() {
            map.insert(inclusive.into(), bound);
            map.insert(exclusive.into(), json!(true));
        }
    }
    if let Some(Value::Array(prefix)) = map.remove("prefixItems") {
        let length = prefix.len();
        let closed = map.get("items") == Some(&json!({"not": {}}))
            || map.get("items") == Some(&Value::Bool(false));
        let mut members = prefix;
        if let Some(rest) = map.remove("items").filter(|_| !closed) {
            members.push(rest);
        } else {
            map.insert("maxItems".into(), json!(length));
        }
        map.entry("minItems").or_insert(json!(length));
        map.insert("items".into(), json!({"anyOf": members}));
    }

    // `type: [..]`: null becomes `nullable`, several types an anyOf.
    if let Some(Value::Array(types)) = map.get("type").cloned() {
        let mut kept: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        nullable |= kept.len() < map["type"].as_array().map_or(0, Vec::len);
        match kept.len() {
            0 => {
                map.remove("type");
                map.insert("enum".into(), json!([null]));
            }
            1 => {
                map.insert("type".into(), kept.remove(0));
            }
            _ => {
                map.remove("type");
                let alternatives: Vec<Value> =
                    kept.into_iter().map(|t| json!({"type": t})).collect();
                add_alternatives(map, alternatives);
            }
        }
    } else if map.get("type") == Some(&json!("null")) {
        map.remove("type");
        map.insert("enum".into(), json!([null]));
        nullable = true;
    }
    // `anyOf`/`oneOf` with a null member: the member goes, the schema becomes nullable.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(members)) = map.get_mut(key) {
            let before = members.len();
            members.retain(|m| !is_null_schema(m));
            if members.len() < before {
                nullable = true;
                if members.is_empty() {
                    map.remove(key);
                }
            }
        }
    }
    if nullable {
        map.insert("nullable".into(), json!(true));
    }
    if map.get("type") == Some(&json!("array")) && !map.contains_key("items") {
        map.insert("items".into(), json!({}));
    }
    if map
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        map.remove("required");
    }
    map.retain(|key, _| SCHEMA_KEYWORDS.contains(&key.as_str()) || key.starts_with("x-"));
    // A reference with siblings: 3.0 ignores the siblings, so the reference moves into allOf.
    if map.contains_key("$ref") && map.len() > 1 {
        let reference = map.remove("$ref").expect("present");
        add_all_of(map, json!({"$ref": reference}));
    }
}

/// Whether `schema` accepts only `null` (after conversion: `{enum: [null], nullable: true}`).
fn is_null_schema(schema: &Value) -> bool {
    schema.get("enum") == Some(&json!([null])) && schema.get("nullable") == Some(&json!(true))
        || schema.get("type") == Some(&json!("null"))
}

/// Adds `alternatives` as an `anyOf`, inside an `allOf` when the schema has one already.
fn add_alternatives(map: &mut Map<String, Value>, alternatives: Vec<Value>) {
    if map.contains_key("anyOf") {
        add_all_of(map, json!({"anyOf": alternatives}));
    } else {
        map.insert("anyOf".into(), Value::Array(alternatives));
    }
}

fn add_all_of(map: &mut Map<String, Value>, member: Value) {
    match map.get_mut("allOf") {
        Some(Value::Array(members)) => members.insert(0, member),
        _ => {
            map.insert("allOf".into(), json!([member]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converted(mut value: Value) -> Value {
        schema(&mut value);
        value
    }

    #[test]
    fn nullability_becomes_nullable() {
        assert_eq!(
            converted(json!({"type": ["string", "null"]})),
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            converted(json!({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]})),
            json!({"anyOf": [{"$ref": "#/components/schemas/A"}], "nullable": true})
        );
        assert_eq!(
            converted(json!({"type": ["integer", "string"]})),
            json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})
        );
    }

    #[test]
    fn keywords_3_0_lacks_are_rewritten_or_left_out() {
        assert_eq!(
            converted(json!({"const": "a", "examples": ["a"], "$comment": "x"})),
            json!({"enum": ["a"], "example": "a"})
        );
        assert_eq!(
            converted(json!({"type": "number", "exclusiveMinimum": 0})),
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true})
        );
        assert_eq!(
            converted(json!({"$ref": "#/components/schemas/A", "description": "d"})),
            json!({"allOf": [{"$ref": "#/components/schemas/A"}], "description": "d"})
        );
        assert_eq!(
            converted(
                json!({"type": "array", "prefixItems": [{"type": "string"}, true], "items": false})
            ),
            json!({"type": "array", "items": {"anyOf": [{"type": "string"}, {}]}, "minItems": 2, "maxItems": 2})
        );
        assert_eq!(
            converted(
                json!({"type": "object", "required": [], "additionalProperties": false, "properties": {"x": false}})
            ),
            json!({"type": "object", "additionalProperties": false, "properties": {"x": {"not": {}}}})
        );
        assert_eq!(
            converted(json!({"type": "array"})),
            json!({"type": "array", "items": {}})
        );
    }
}
