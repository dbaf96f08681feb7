//! The OpenAPI 3.2 variant of the 3.1 document: the same operations and schemas, with each
//! `text/event-stream` answer described one event at a time by 3.2's `itemSchema`.
//!
//! Why a variant: OpenAPI 3.1 has no per-event keyword, and the tools disagree on what a
//! `text/event-stream` `schema` means. Generators (hey-api, openapi-typescript) read it as the
//! type of one item's `data`, which is what `/openapi.json` writes; validators (schemathesis)
//! read it as one parsed event `{event, id, data}`, which is what 3.2 says `itemSchema` is. So
//! this document writes each event as `{event, id, data}` whose `data` is JSON text with the
//! item schema (or a `CallError`, or `{}` for `completed`) as its `contentSchema`.

use serde_json::{Value, json};

/// The 3.2 variant of an OpenAPI 3.1 document made by [`super::openapi_document`].
pub fn upgrade(document: &Value) -> Value {
    let mut document = document.clone();
    document["openapi"] = json!("3.2.0");
    let Some(Value::Object(paths)) = document.get_mut("paths") else {
        return document;
    };
    for item in paths.values_mut() {
        let Value::Object(item) = item else { continue };
        for operation in item.values_mut() {
            let Some(Value::Object(responses)) = operation.get_mut("responses") else {
                continue;
            };
            for response in responses.values_mut() {
                if let Some(stream) = response.pointer_mut("/content/text~1event-stream")
                    && let Some(item) = stream.as_object_mut().and_then(|s| s.remove("schema"))
                {
                    stream["itemSchema"] = event_schema(item);
                }
            }
        }
    }
    document
}

/// One parsed Server-Sent Event of a subscription whose items follow `item`.
fn event_schema(item: Value) -> Value {
    json!({
        "type": "object",
        "description": "One Server-Sent Event: an item (no `event:`, or `message`) with its number as `id`, or the end: `completed` (data `{}`) or `error` (data a `CallError`), both with `id: end`.",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": ["message", "completed", "error"]},
            "id": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [
                    item,
                    {"$ref": "#/components/schemas/CallError"},
                    {"type": "object", "maxProperties": 0, "description": "The data of `event: completed`."}
                ]}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_get_an_item_schema() {
        let document = json!({"openapi": "3.1.0", "paths": {"/ops/a/watch": {"post": {"responses": {
            "200": {"description": "d", "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/Tick"}}}},
            "404": {"description": "d", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallError"}}}}
        }}}}});
        let upgraded = upgrade(&document);
        assert_eq!(upgraded["openapi"], "3.2.0");
        let stream = &upgraded["paths"]["/ops/a/watch"]["post"]["responses"]["200"]["content"]["text/event-stream"];
        assert!(stream.get("schema").is_none());
        assert_eq!(
            stream["itemSchema"]["properties"]["data"]["contentSchema"]["anyOf"][0]["$ref"],
            "#/components/schemas/Tick"
        );
        assert_eq!(
            upgraded["paths"]["/ops/a/watch"]["post"]["responses"]["404"],
            document["paths"]["/ops/a/watch"]["post"]["responses"]["404"]
        );
    }
}
