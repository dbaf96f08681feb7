//! Reading an OpenAPI document: from a file or a URL, JSON or YAML; resolving its local
//! references; turning its schemas into self-contained JSON Schema 2020-12.
//!
//! A schema of the document becomes one schema with `$defs`: every `#/components/schemas/X` it
//! uses (directly or through other components) is carried as `$defs/X`, so recursive types stay
//! recursive and each component is converted once. Other local references (into parameters,
//! paths, a component's property) are inlined. References to other files or URLs cannot be
//! followed: the operation that needs one is skipped.
//!
//! OpenAPI 3.0 schemas are a dialect of draft 4; they are rewritten to 2020-12 here:
//! `nullable: true` admits `null`, boolean `exclusiveMinimum`/`exclusiveMaximum` become the
//! numeric form, `example` becomes `examples`, and keywords next to a `$ref` are dropped (3.0
//! ignores them). 3.1 schemas are 2020-12 already.

use std::collections::BTreeMap;

use alknet_spec::keywords;
use serde_json::{Map, Value, json};

use crate::adapters::http_client::{HttpClient, MAX_BODY, read_body};

/// Which OpenAPI the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V30,
    V31,
}

/// A parsed document and where it came from.
#[derive(Debug)]
pub(super) struct Document {
    pub(super) root: Value,
    pub(super) version: Version,
    /// The URL it was read from, against which relative `servers` resolve.
    pub(super) url: Option<String>,
}

/// How deep a chain of inlined references may go: deeper is taken for a cycle.
const MAX_INLINE_DEPTH: usize = 32;

/// How many references one operation's schemas may inline: a document whose references fan
/// out (each place referring to the next twice, 32 deep) would otherwise grow without bound.
const MAX_INLINED: usize = 4096;

impl Document {
    /// Reads the document at `source`: an `http://` or `https://` URL, or a file path.
    pub(super) async fn load(source: &str, client: &HttpClient) -> Result<Self, String> {
        let (text, url) = if source.starts_with("http://") || source.starts_with("https://") {
            let uri: hyper::Uri = source.parse().map_err(|e| format!("`{source}`: {e}"))?;
            let request = hyper::Request::get(uri)
                .header(
                    hyper::header::ACCEPT,
                    "application/json, application/yaml, */*",
                )
                .body(Default::default())
                .map_err(|e| e.to_string())?;
            let response =
                tokio::time::timeout(std::time::Duration::from_secs(30), client.send(request))
                    .await
                    .map_err(|_| "no answer within 30 s".to_owned())??;
            let status = response.status();
            let body = read_body(response.into_body(), MAX_BODY).await?;
            if !status.is_success() {
                return Err(format!("GET {source} answered {status}"));
            }
            (
                String::from_utf8(body.to_vec()).map_err(|_| "the document is not UTF-8")?,
                Some(source.to_owned()),
            )
        } else {
            let size = std::fs::metadata(source)
                .map_err(|e| format!("{source}: {e}"))?
                .len();
            if size > MAX_BODY as u64 {
                return Err(format!("{source} is larger than {MAX_BODY} bytes"));
            }
            (
                std::fs::read_to_string(source).map_err(|e| format!("{source}: {e}"))?,
                None,
            )
        };
        Self::parse(&text, url)
    }

    /// Parses a document's text (JSON, or YAML when it is not JSON).
    pub(super) fn parse(text: &str, url: Option<String>) -> Result<Self, String> {
        let root: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
        } else {
            yaml_to_json(text)?
        };
        let version = match root.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.0") => Version::V30,
            Some(v) if v.starts_with("3.1") || v.starts_with("3.2") => Version::V31,
            Some(v) => {
                return Err(format!(
                    "OpenAPI {v} is not supported (3.0, 3.1 and 3.2 are)"
                ));
            }
            None if root.get("swagger").is_some() => {
                return Err(
                    "Swagger 2.0 is not supported: convert the document to OpenAPI 3 first"
                        .to_owned(),
                );
            }
            None => return Err("not an OpenAPI document (no `openapi` field)".to_owned()),
        };
        if !root.get("paths").is_none_or(Value::is_object) {
            return Err("`paths` is not an object".to_owned());
        }
        Ok(Self { root, version, url })
    }

    /// Follows `$ref`s from `value` (a parameter, request body, response, path item) to the
    /// object they name. `pointer` is where `value` stands, for messages.
    pub(super) fn resolve<'a>(
        &'a self,
        value: &'a Value,
        pointer: &str,
    ) -> Result<&'a Value, String> {
        let mut value = value;
        for _ in 0..MAX_INLINE_DEPTH {
            match value.get("$ref").and_then(Value::as_str) {
                Some(reference) => value = self.target(reference, pointer)?,
                None => return Ok(value),
            }
        }
        Err(format!("{pointer}: a cycle of `$ref`s"))
    }

    /// What a local reference points to.
    fn target(&self, reference: &str, pointer: &str) -> Result<&Value, String> {
        let Some(fragment) = reference.strip_prefix('#') else {
            return Err(format!(
                "{pointer}: `$ref` to `{reference}` leaves this document (not followed)"
            ));
        };
        let decoded = percent_encoding::percent_decode_str(fragment)
            .decode_utf8()
            .map_err(|_| format!("{pointer}: `$ref` `{reference}` is not UTF-8"))?;
        self.root
            .pointer(&decoded)
            .ok_or_else(|| format!("{pointer}: `$ref` `{reference}` names nothing in the document"))
    }

    /// A converter that gathers the components one operation's schemas use.
    pub(super) fn schemas(&self) -> SchemaConverter<'_> {
        SchemaConverter {
            document: self,
            defs: BTreeMap::new(),
            pending: Vec::new(),
            inlined: 0,
        }
    }
}

/// YAML text as JSON. Keys that YAML reads as numbers or booleans (`200:` under `responses`)
/// become strings, as in the JSON form of the same document.
fn yaml_to_json(text: &str) -> Result<Value, String> {
    let value: YamlValue = serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    Ok(value.0)
}

/// A JSON value read from YAML, with map keys of any scalar type made strings.
struct YamlValue(Value);

impl<'de> serde::Deserialize<'de> for YamlValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlVisitor).map(YamlValue)
    }
}

struct YamlVisitor;

impl<'de> serde::de::Visitor<'de> for YamlVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(YamlValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((YamlValue(key), YamlValue(value))) = map.next_entry()? {
            let key = match key {
                Value::String(key) => key,
                Value::Null => "null".to_owned(),
                Value::Bool(_) | Value::Number(_) => key.to_string(),
                _ => return Err(serde::de::Error::custom("a map key is not a scalar")),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Turns the document's schemas into 2020-12, gathering the components they use as `$defs`.
pub(super) struct SchemaConverter<'a> {
    document: &'a Document,
    /// Components converted (or being converted), by name.
    defs: BTreeMap<String, Value>,
    /// Components referred to and not yet converted.
    pending: Vec<String>,
    /// References inlined so far (bounded by [`MAX_INLINED`]).
    inlined: usize,
}

const COMPONENT_SCHEMAS: &str = "#/components/schemas/";

impl SchemaConverter<'_> {
    /// The 2020-12 form of the document's schema `schema`, found at `pointer`.
    pub(super) fn convert(&mut self, schema: &Value, pointer: &str) -> Result<Value, String> {
        let mut schema = schema.clone();
        self.rewrite(&mut schema, pointer, 0)?;
        Ok(schema)
    }

    /// Wraps `schema` with the `$defs` gathered so far (converting every component they use).
    pub(super) fn finish(&mut self, mut schema: Value) -> Result<Value, String> {
        while let Some(name) = self.pending.pop() {
            let pointer = format!("{COMPONENT_SCHEMAS}{}", keywords::escape(&name));
            let component = self
                .document
                .root
                .pointer(&pointer[1..])
                .cloned()
                .ok_or_else(|| format!("`$ref` `{pointer}` names nothing in the document"))?;
            let mut component = component;
            self.rewrite(&mut component, &pointer, 0)?;
            self.defs.insert(name, component);
        }
        if !self.defs.is_empty() {
            if let Value::Bool(accepts) = schema {
                schema = if accepts {
                    json!({})
                } else {
                    json!({"not": {}})
                };
            }
            if let Value::Object(map) = &mut schema {
                let defs = map.entry("$defs").or_insert_with(|| json!({}));
                if let Value::Object(defs) = defs {
                    for (name, def) in &self.defs {
                        defs.insert(name.clone(), def.clone());
                    }
                }
            }
        }
        Ok(schema)
    }

    fn rewrite(&mut self, schema: &mut Value, pointer: &str, depth: usize) -> Result<(), String> {
        let Value::Object(map) = schema else {
            return Ok(());
        };
        if let Some(Value::String(reference)) = map.get("$ref") {
            let reference = reference.clone();
            if self.document.version == Version::V30 {
                // 3.0: a `$ref` replaces the whole object.
                map.retain(|key, _| key == "$ref" || key == "description");
            }
            if let Some(name) = component_name(&reference) {
                if !self.defs.contains_key(&name) {
                    self.defs.insert(name.clone(), Value::Bool(true));
                    self.pending.push(name.clone());
                }
                map.insert(
                    "$ref".into(),
                    Value::String(format!("#/$defs/{}", keywords::escape(&name))),
                );
            } else {
                if depth >= MAX_INLINE_DEPTH {
                    return Err(format!("{pointer}: `$ref`s nest too deep (a cycle?)"));
                }
                self.inlined += 1;
                if self.inlined > MAX_INLINED {
                    return Err(format!(
                        "{pointer}: more than {MAX_INLINED} `$ref`s to inline (use components/schemas)"
                    ));
                }
                let mut target = self.document.target(&reference, pointer)?.clone();
                self.rewrite(&mut target, pointer, depth + 1)?;
                map.remove("$ref");
                if map.is_empty() {
                    *schema = target;
                    return Ok(());
                }
                // Other keywords stand beside it (3.1): both apply.
                let mut rest = std::mem::take(map);
                self.rewrite_keywords(&mut rest, pointer, depth)?;
                *schema = json!({"allOf": [target, Value::Object(rest)]});
                return Ok(());
            }
        }
        self.rewrite_keywords(map, pointer, depth)
    }

    fn rewrite_keywords(
        &mut self,
        map: &mut Map<String, Value>,
        pointer: &str,
        depth: usize,
    ) -> Result<(), String> {
        if self.document.version == Version::V30 {
            from_openapi_30(map);
        }
        for (key, child) in map.iter_mut() {
            let key = key.as_str();
            let here = |k: &str| format!("{pointer}/{}", keywords::escape(k));
            if keywords::MAP.contains(&key) {
                if let Value::Object(children) = child {
                    for (name, child) in children.iter_mut() {
                        self.rewrite(
                            child,
                            &format!("{}/{}", here(key), keywords::escape(name)),
                            depth,
                        )?;
                    }
                }
            } else if keywords::LIST.contains(&key) || (key == "items" && child.is_array()) {
                if let Value::Array(children) = child {
                    for (i, child) in children.iter_mut().enumerate() {
                        self.rewrite(child, &format!("{}/{i}", here(key)), depth)?;
                    }
                }
            } else if keywords::SINGLE.contains(&key) {
                self.rewrite(child, &here(key), depth)?;
            }
        }
        Ok(())
    }
}

/// The component a `#/components/schemas/X` reference names (not a place inside it).
fn component_name(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix(COMPONENT_SCHEMAS)?;
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    (!decoded.contains('/')).then(|| keywords::unescape(&decoded))
}

/// Rewrites one OpenAPI 3.0 schema object's own keywords to 2020-12.
fn from_openapi_30(map: &mut Map<String, Value>) {
    if map.remove("nullable") == Some(Value::Bool(true)) {
        match map.get_mut("type") {
            Some(Value::String(t)) => {
                let t = t.clone();
                map.insert("type".into(), json!([t, "null"]));
                if let Some(Value::Array(values)) = map.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            _ => {
                let rest = std::mem::take(map);
                map.insert(
                    "anyOf".into(),
                    json!([Value::Object(rest), {"type": "null"}]),
                );
                return;
            }
        }
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(Value::Bool(exclusive)) = map.get(flag) {
            let exclusive = *exclusive;
            map.remove(flag);
            if exclusive && let Some(value) = map.remove(bound) {
                map.insert(flag.into(), value);
            }
        }
    }
    if let Some(example) = map.remove("example") {
        map.entry("examples").or_insert_with(|| json!([example]));
    }
}

/// The names of the `$defs` a converted schema carries (for tests and messages).
#[cfg(test)]
pub(super) fn def_names(schema: &Value) -> std::collections::BTreeSet<String> {
    schema
        .get("$defs")
        .and_then(Value::as_object)
        .map(|defs| defs.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(text, None).unwrap()
    }

    #[test]
    fn yaml_with_numeric_keys_reads_as_the_json_form() {
        let d = doc(
            "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        200:\n          description: ok\n",
        );
        assert!(
            d.root.pointer("/paths/~1a/get/responses/200").is_some(),
            "{}",
            d.root
        );
        assert_eq!(d.version, Version::V30);
        assert!(
            Document::parse("swagger: '2.0'\n", None)
                .unwrap_err()
                .contains("Swagger")
        );
        assert!(
            Document::parse("a: [1, 2\n", None)
                .unwrap_err()
                .contains("YAML")
        );
    }

    #[test]
    fn components_become_defs_and_30_keywords_become_2020_12() {
        let d = doc(
            r##"{"openapi": "3.0.3", "paths": {}, "components": {"schemas": {
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}, "tag": {"$ref": "#/components/schemas/Tag"}}},
            "Tag": {"type": "string", "nullable": true, "example": "x"},
            "Count": {"type": "integer", "minimum": 0, "exclusiveMinimum": true}
        }}}"##,
        );
        let mut schemas = d.schemas();
        let top = schemas
            .convert(
                &json!({"$ref": "#/components/schemas/Node", "description": "d", "minimum": 3}),
                "#/x",
            )
            .unwrap();
        let top = schemas.finish(top).unwrap();
        assert_eq!(top["$ref"], "#/$defs/Node");
        assert!(
            top.get("minimum").is_none(),
            "3.0 ignores keywords beside $ref"
        );
        assert_eq!(def_names(&top), ["Node", "Tag"].map(String::from).into());
        assert_eq!(top["$defs"]["Tag"]["type"], json!(["string", "null"]));
        assert_eq!(top["$defs"]["Tag"]["examples"], json!(["x"]));
        let validator = jsonschema::validator_for(&top).unwrap();
        assert!(validator.is_valid(&json!({"next": {"tag": null}, "tag": "a"})));
        assert!(!validator.is_valid(&json!({"next": {"tag": 3}})));

        let mut schemas = d.schemas();
        let count = schemas
            .convert(&json!({"$ref": "#/components/schemas/Count"}), "#/y")
            .unwrap();
        let count = schemas.finish(count).unwrap();
        assert_eq!(
            count["$defs"]["Count"],
            json!({"type": "integer", "exclusiveMinimum": 0})
        );

        let mut schemas = d.schemas();
        let inner = schemas
            .convert(
                &json!({"$ref": "#/components/schemas/Node/properties/tag"}),
                "#/z",
            )
            .unwrap();
        assert_eq!(schemas.finish(inner).unwrap()["$ref"], "#/$defs/Tag");
        let error = d
            .schemas()
            .convert(&json!({"$ref": "other.yaml#/Pet"}), "#/paths/~1p/get")
            .unwrap_err();
        assert!(
            error.starts_with("#/paths/~1p/get") && error.contains("leaves"),
            "{error}"
        );

        // References that fan out (each level naming the next twice) are bounded, as is a cycle
        // outside components.
        let mut levels = serde_json::Map::new();
        for i in 0..20 {
            let next = format!("#/x/l{}", i + 1);
            levels.insert(
                format!("l{i}"),
                json!({"allOf": [{"$ref": next}, {"$ref": next}]}),
            );
        }
        levels.insert("l20".into(), json!({"type": "string"}));
        let d = doc(&json!({"openapi": "3.1.0", "paths": {}, "x": levels}).to_string());
        let error = d
            .schemas()
            .convert(&json!({"$ref": "#/x/l0"}), "#/p")
            .unwrap_err();
        assert!(error.contains("more than 4096"), "{error}");
        let d = doc(
            r##"{"openapi": "3.1.0", "paths": {}, "x": {"a": {"$ref": "#/x/b"}, "b": {"items": {"$ref": "#/x/a"}}}}"##,
        );
        let error = d
            .schemas()
            .convert(&json!({"$ref": "#/x/a"}), "#/p")
            .unwrap_err();
        assert!(error.contains("too deep"), "{error}");
    }
}
