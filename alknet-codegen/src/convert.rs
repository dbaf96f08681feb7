//! The one boundary between the IR's JSON Schema 2020-12 and the draft-07 model of schemars 0.8
//! that typify reads.
//!
//! - `$defs` become `definitions`, and `#/$defs/X` references `#/definitions/X`;
//! - `prefixItems` becomes the array form of `items`, and `items` beside it `additionalItems`;
//! - `dependentRequired` and `dependentSchemas` become `dependencies`;
//! - `pattern` is dropped, and so is `format` except the numeric widths (`uint64`, `int32`,
//!   `float`, …), which give the exact Rust integer or float type: the others constrain
//!   values, which the runtime validates against the real schema, and typify would need extra
//!   crates (regress, chrono, uuid) in every generated crate for them;
//! - `patternProperties` join `additionalProperties` (their value schemas under `anyOf`): the
//!   map's keys are `String`s in Rust, as typify would otherwise key them with `regress`
//!   regexes; the key patterns are checked at run time against the real schema;
//! - keywords draft-07 cannot express are refused with their JSON pointer.

use alknet_spec::keywords::escape;
use serde_json::{Map, Value};

use crate::service::UNSUPPORTED_KEYWORDS;

/// What string `format`s become in Rust.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Formats {
    /// `String`, whatever the format (the values are validated at run time).
    #[default]
    Strings,
    /// `date-time`, `date`, `uuid`, `ipv4`, `ipv6` become `chrono::DateTime<Utc>`,
    /// `chrono::NaiveDate`, `uuid::Uuid`, `std::net::Ipv4Addr`, `std::net::Ipv6Addr`: the crate
    /// using the generated code then depends on `chrono` and `uuid` (with `serde`).
    Typed,
}

/// The string formats [`Formats::Typed`] keeps.
const TYPED_FORMATS: &[&str] = &["date-time", "date", "uuid", "ipv4", "ipv6"];

/// A schema typify cannot take, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported {
    /// JSON Pointer inside the converted schema.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// Converts one 2020-12 schema (value) into the draft-07 shape.
pub fn to_draft07(schema: &Value, pointer: &str, formats: Formats) -> Result<Value, Unsupported> {
    match schema {
        Value::Bool(_) => Ok(schema.clone()),
        Value::Object(map) => {
            let mut out = Map::new();
            let prefix_items = map.get("prefixItems");
            for (key, value) in map {
                let at = format!("{pointer}/{}", escape(key));
                if UNSUPPORTED_KEYWORDS.contains(&key.as_str()) {
                    return Err(Unsupported {
                        pointer: at,
                        message: format!("`{key}` cannot be expressed in the generated Rust types"),
                    });
                }
                match key.as_str() {
                    "format" if is_numeric(map) && value.as_str().is_some_and(is_width) => {
                        out.insert(key.clone(), value.clone());
                    }
                    "format"
                        if formats == Formats::Typed
                            && map.get("type") == Some(&Value::String("string".into()))
                            && value.as_str().is_some_and(|f| TYPED_FORMATS.contains(&f)) =>
                    {
                        out.insert(key.clone(), value.clone());
                    }
                    "$schema" | "$id" | "$comment" | "pattern" | "format" | "contentMediaType"
                    | "contentEncoding" | "deprecated" | "readOnly" | "writeOnly" | "examples" => {}
                    "$ref" => {
                        let reference = value.as_str().unwrap_or_default();
                        let reference = match reference.strip_prefix("#/$defs/") {
                            Some(name) => format!("#/definitions/{name}"),
                            None => reference.to_owned(),
                        };
                        out.insert("$ref".into(), Value::String(reference));
                    }
                    "$defs" | "definitions" => {
                        let defs = out
                            .entry("definitions")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let (Value::Object(defs), Value::Object(children)) = (defs, value) {
                            for (name, child) in children {
                                defs.insert(
                                    name.clone(),
                                    to_draft07(child, &format!("{at}/{}", escape(name)), formats)?,
                                );
                            }
                        }
                    }
                    "properties" | "patternProperties" => {
                        let mut children = Map::new();
                        if let Value::Object(entries) = value {
                            for (name, child) in entries {
                                children.insert(
                                    name.clone(),
                                    to_draft07(child, &format!("{at}/{}", escape(name)), formats)?,
                                );
                            }
                        }
                        out.insert(key.clone(), Value::Object(children));
                    }
                    "prefixItems" => {
                        let items = value
                            .as_array()
                            .map(|items| {
                                items
                                    .iter()
                                    .enumerate()
                                    .map(|(i, item)| {
                                        to_draft07(item, &format!("{at}/{i}"), formats)
                                    })
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .transpose()?
                            .unwrap_or_default();
                        out.insert("items".into(), Value::Array(items));
                    }
                    "items" if prefix_items.is_some() => {
                        out.insert("additionalItems".into(), to_draft07(value, &at, formats)?);
                    }
                    "dependentRequired" | "dependentSchemas" => {
                        let deps = out
                            .entry("dependencies")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let (Value::Object(deps), Value::Object(entries)) = (deps, value) {
                            for (name, child) in entries {
                                let converted = if key == "dependentSchemas" {
                                    to_draft07(child, &format!("{at}/{}", escape(name)), formats)?
                                } else {
                                    child.clone()
                                };
                                deps.insert(name.clone(), converted);
                            }
                        }
                    }
                    "allOf" | "anyOf" | "oneOf" => {
                        let children = value
                            .as_array()
                            .map(|items| {
                                items
                                    .iter()
                                    .enumerate()
                                    .map(|(i, item)| {
                                        to_draft07(item, &format!("{at}/{i}"), formats)
                                    })
                                    .collect::<Result<Vec<_>, _>>()
                            })
                            .transpose()?
                            .unwrap_or_default();
                        out.insert(key.clone(), Value::Array(children));
                    }
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "if"
                    | "then"
                    | "else"
                    | "contains"
                    | "propertyNames"
                    | "additionalItems" => {
                        out.insert(key.clone(), to_draft07(value, &at, formats)?);
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            fold_pattern_properties(&mut out);
            Ok(Value::Object(out))
        }
        _ => Err(Unsupported {
            pointer: pointer.to_owned(),
            message: "a schema is a JSON object or a boolean".into(),
        }),
    }
}

/// Whether a schema's `type` is `integer` or `number` (alone or with `null`).
fn is_numeric(map: &Map<String, Value>) -> bool {
    let numeric = |t: &Value| t == "integer" || t == "number";
    match map.get("type") {
        Some(Value::Array(types)) => {
            types.iter().any(numeric) && types.iter().all(|t| numeric(t) || t == "null")
        }
        Some(single) => numeric(single),
        None => false,
    }
}

/// The numeric `format`s that name a width (`uint64`, `int32`, `double`, …: schemars writes
/// them for Rust's integer and float types): kept, so the Rust type is exactly as wide.
fn is_width(format: &str) -> bool {
    matches!(
        format,
        "int8"
            | "uint8"
            | "int16"
            | "uint16"
            | "int"
            | "int32"
            | "uint"
            | "uint32"
            | "int64"
            | "uint64"
            | "float"
            | "double"
    )
}

/// Moves `patternProperties` into `additionalProperties`: the values any key may hold, whatever
/// the key (see the module notes).
fn fold_pattern_properties(out: &mut Map<String, Value>) {
    let Some(Value::Object(patterns)) = out.remove("patternProperties") else {
        return;
    };
    if patterns.is_empty() {
        return;
    }
    let mut values: Vec<Value> = patterns.into_iter().map(|(_, schema)| schema).collect();
    match out.remove("additionalProperties") {
        // Other keys take anything: so does the map.
        None | Some(Value::Bool(true)) => {
            out.insert("additionalProperties".into(), Value::Bool(true));
            return;
        }
        Some(Value::Bool(false)) => {}
        Some(other) => values.push(other),
    }
    values.dedup();
    let joined = if values.len() == 1 {
        values.remove(0)
    } else {
        serde_json::json!({"anyOf": values})
    };
    out.insert("additionalProperties".into(), joined);
}

/// Parses a converted schema into schemars 0.8's model.
pub fn to_schemars(
    schema: &Value,
    pointer: &str,
    formats: Formats,
) -> Result<schemars08::schema::Schema, Unsupported> {
    let converted = to_draft07(schema, pointer, formats)?;
    serde_json::from_value(converted).map_err(|e| Unsupported {
        pointer: pointer.to_owned(),
        message: format!("not a schema typify can read: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pattern_properties_become_string_keyed_maps() {
        let open = to_draft07(
            &json!({"type": "object", "patternProperties": {"^x-": {"type": "integer"}}}),
            "",
            Formats::Strings,
        )
        .unwrap();
        assert_eq!(
            open,
            json!({"type": "object", "additionalProperties": true})
        );
        let closed = to_draft07(&json!({"type": "object", "patternProperties": {"^a": {"type": "integer"}, "^b": {"type": "string"}}, "additionalProperties": false}), "", Formats::Strings)
        .unwrap();
        assert_eq!(
            closed,
            json!({"type": "object", "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "string"}]}})
        );
        let with_rest = to_draft07(&json!({"patternProperties": {"^a": {"type": "integer"}}, "additionalProperties": {"type": "boolean"}}), "", Formats::Strings)
        .unwrap();
        assert_eq!(
            with_rest["additionalProperties"],
            json!({"anyOf": [{"type": "integer"}, {"type": "boolean"}]})
        );
    }

    #[test]
    fn converts_2020_12_to_draft_07() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"$ref": "#/$defs/N"}], "items": false},
                "email": {"type": "string", "format": "email", "pattern": "@"}
            },
            "dependentRequired": {"a": ["b"]},
            "$defs": {"N": {"type": "integer"}}
        });
        let out = to_draft07(&schema, "", Formats::Strings).unwrap();
        assert!(out.get("$schema").is_none());
        assert_eq!(out["definitions"]["N"]["type"], "integer");
        let pair = &out["properties"]["pair"];
        assert_eq!(pair["items"][1]["$ref"], "#/definitions/N");
        assert_eq!(pair["additionalItems"], json!(false));
        assert!(out["properties"]["email"].get("format").is_none());
        assert_eq!(out["dependencies"]["a"], json!(["b"]));
        to_schemars(&schema, "", Formats::Strings).unwrap();

        let error = to_draft07(
            &json!({"properties": {"x": {"unevaluatedItems": false}}}),
            "/input",
            Formats::Strings,
        )
        .unwrap_err();
        assert_eq!(error.pointer, "/input/properties/x/unevaluatedItems");
    }
}
