//! Service files: the schema-first way to declare operations (format in `schemas/README.md`).
//!
//! [`load`] reads a service file — or a spec bundle, as `alknet spec` prints it — into a
//! validated [`SpecBundle`]. Shared types under the file's `$defs` are copied into each
//! operation's schemas, so every schema in the bundle is self-contained. Every problem is one
//! [`CodegenError`] naming the file and the JSON pointer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use alknet_spec::keywords::{self, escape, unescape};
use alknet_spec::{
    AccessControl, ErrorSpec, OpType, OperationSpec, SpecBundle, Visibility, validate_name,
};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use crate::CodegenError;

/// Keywords of JSON Schema 2020-12 that the generated Rust types (typify reads draft-07) cannot
/// represent. A schema using one is refused with its pointer.
pub const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$anchor",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
    "$vocabulary",
];

/// A service file, loaded: the bundle and what describes the service as a whole.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service name (namespace of every operation).
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its version, for the OpenAPI `info.version`.
    pub version: String,
    /// The operations.
    pub bundle: SpecBundle,
}

/// Reads a service file or a spec bundle.
pub fn load(path: impl AsRef<Path>) -> Result<Service, CodegenError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| CodegenError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses service-file or spec-bundle text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Service, CodegenError> {
    let fail = |pointer: &str, message: String| CodegenError::Service {
        path: path.to_owned(),
        pointer: pointer.to_owned(),
        line: None,
        message,
    };
    if let Err(error) = serde_json::from_str::<NoDuplicateKeys>(text) {
        let (pointer, message) = match error.to_string().split_once('\u{1f}') {
            Some((pointer, message)) => (pointer.to_owned(), message.to_owned()),
            None => (String::new(), error.to_string()),
        };
        let line = (error.line() > 0).then_some(error.line());
        return Err(CodegenError::Service {
            path: path.to_owned(),
            pointer,
            line,
            message: strip_position(&message),
        });
    }
    let document: Value = serde_json::from_str(text).map_err(|e| fail("", e.to_string()))?;
    let Value::Object(root) = &document else {
        return Err(fail("", "a service file is a JSON object".into()));
    };
    if root.contains_key("alknet") {
        let bundle = SpecBundle::from_json(text).map_err(|e| fail("", e.to_string()))?;
        return Ok(Service {
            name: bundle
                .operations
                .first()
                .map(|op| op.namespace.clone())
                .unwrap_or_else(|| "alknet".into()),
            description: String::new(),
            version: "1.0.0".into(),
            bundle,
        });
    }
    ServiceParser { root, fail: &fail }.parse()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

struct ServiceParser<'a, F> {
    root: &'a Map<String, Value>,
    fail: &'a F,
}

impl<F: Fn(&str, String) -> CodegenError> ServiceParser<'_, F> {
    fn known_keys(
        &self,
        object: &Map<String, Value>,
        pointer: &str,
        known: &[&str],
    ) -> Result<(), CodegenError> {
        match object.keys().find(|k| !known.contains(&k.as_str())) {
            Some(key) => Err((self.fail)(
                &format!("{pointer}/{}", escape(key)),
                format!("unknown key `{key}`; expected one of: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn string(
        &self,
        object: &Map<String, Value>,
        key: &str,
        pointer: &str,
        required: bool,
    ) -> Result<Option<String>, CodegenError> {
        match object.get(key) {
            None if required => Err((self.fail)(pointer, format!("missing `{key}`"))),
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((self.fail)(
                &format!("{pointer}/{key}"),
                format!("`{key}` must be a string"),
            )),
        }
    }

    fn strings(&self, value: &Value, pointer: &str) -> Result<Vec<String>, CodegenError> {
        let items = value
            .as_array()
            .ok_or_else(|| (self.fail)(pointer, "expected an array of strings".into()))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    (self.fail)(&format!("{pointer}/{i}"), "expected a string".into())
                })
            })
            .collect()
    }

    fn parse(&self) -> Result<Service, CodegenError> {
        let root = self.root;
        self.known_keys(
            root,
            "",
            &[
                "$schema",
                "service",
                "description",
                "version",
                "operations",
                "$defs",
            ],
        )?;
        let name = self.string(root, "service", "", true)?.unwrap_or_default();
        if name.is_empty() || name.contains('/') || validate_name(&format!("{name}/x")).is_err() {
            return Err((self.fail)(
                "/service",
                format!("service name `{name}` must be one segment of [A-Za-z0-9_-]"),
            ));
        }
        let defs = match root.get("$defs") {
            None => Map::new(),
            Some(Value::Object(defs)) => defs.clone(),
            Some(_) => return Err((self.fail)("/$defs", "`$defs` must be an object".into())),
        };
        for (def, schema) in &defs {
            self.check_schema(schema, &format!("/$defs/{}", escape(def)), &defs)?;
        }
        let operations = match root.get("operations") {
            Some(Value::Object(ops)) => ops,
            Some(_) => {
                return Err((self.fail)(
                    "/operations",
                    "`operations` must be an object".into(),
                ));
            }
            None => return Err((self.fail)("", "missing `operations`".into())),
        };
        let mut specs = Vec::new();
        for (key, op) in operations {
            let pointer = format!("/operations/{}", escape(key));
            specs.push(self.operation(&name, key, op, &pointer, &defs)?);
        }
        let bundle =
            SpecBundle::new(specs).map_err(|e| (self.fail)("/operations", e.to_string()))?;
        Ok(Service {
            name,
            description: self
                .string(root, "description", "", false)?
                .unwrap_or_default(),
            version: self
                .string(root, "version", "", false)?
                .unwrap_or_else(|| "1.0.0".into()),
            bundle,
        })
    }

    fn operation(
        &self,
        service: &str,
        key: &str,
        op: &Value,
        pointer: &str,
        defs: &Map<String, Value>,
    ) -> Result<OperationSpec, CodegenError> {
        let Value::Object(op) = op else {
            return Err((self.fail)(pointer, "an operation is a JSON object".into()));
        };
        self.known_keys(
            op,
            pointer,
            &[
                "kind",
                "description",
                "input",
                "output",
                "errors",
                "access",
                "visibility",
                "deprecated",
                "resumable",
            ],
        )?;
        let name = format!("{service}/{key}");
        validate_name(&name).map_err(|e| (self.fail)(pointer, e.to_string()))?;
        let kind = match self.string(op, "kind", pointer, true)?.as_deref() {
            Some("query") => OpType::Query,
            Some("mutation") => OpType::Mutation,
            Some("subscription") => OpType::Subscription,
            other => {
                return Err((self.fail)(
                    &format!("{pointer}/kind"),
                    format!(
                        "kind `{}` must be query, mutation or subscription",
                        other.unwrap_or("")
                    ),
                ));
            }
        };
        let schema = |field: &str| -> Result<Value, CodegenError> {
            match op.get(field) {
                None => Ok(json!(true)),
                Some(schema) => {
                    let at = format!("{pointer}/{field}");
                    self.check_schema(schema, &at, defs)?;
                    Ok(self_contained(schema, defs))
                }
            }
        };
        let mut spec = OperationSpec::new(&name, kind)
            .map_err(|e| (self.fail)(pointer, e.to_string()))?
            .with_description(
                self.string(op, "description", pointer, false)?
                    .unwrap_or_default(),
            )
            .with_input_schema(schema("input")?)
            .with_output_schema(schema("output")?);
        if let Some(errors) = op.get("errors") {
            let at = format!("{pointer}/errors");
            let errors = errors
                .as_object()
                .ok_or_else(|| (self.fail)(&at, "`errors` maps codes to error objects".into()))?;
            for (code, error) in errors {
                let at = format!("{at}/{}", escape(code));
                let error = error
                    .as_object()
                    .ok_or_else(|| (self.fail)(&at, "an error is a JSON object".into()))?;
                self.known_keys(error, &at, &["description", "http_status", "details"])?;
                alknet_spec::check_error_code(code).map_err(|problem| {
                    (self.fail)(&at, format!("error code `{code}` {problem}"))
                })?;
                let mut spec_error = ErrorSpec::new(
                    code,
                    self.string(error, "description", &at, false)?
                        .unwrap_or_default(),
                );
                if let Some(status) = error.get("http_status") {
                    let status = status
                        .as_u64()
                        .filter(|s| (400..=599).contains(s))
                        .ok_or_else(|| {
                            (self.fail)(
                                &format!("{at}/http_status"),
                                "http_status must be an integer in 400..=599".into(),
                            )
                        })?;
                    spec_error = spec_error.with_http_status(status as u16);
                }
                if let Some(details) = error.get("details") {
                    self.check_schema(details, &format!("{at}/details"), defs)?;
                    spec_error = spec_error.with_schema(self_contained(details, defs));
                }
                spec = spec.with_error(spec_error);
            }
        }
        if let Some(access) = op.get("access") {
            let at = format!("{pointer}/access");
            let access = access
                .as_object()
                .ok_or_else(|| (self.fail)(&at, "`access` is a JSON object".into()))?;
            self.known_keys(access, &at, &["scopes", "scopes_any", "resource"])?;
            let mut control = AccessControl::default();
            if let Some(scopes) = access.get("scopes") {
                control.required_scopes = self.strings(scopes, &format!("{at}/scopes"))?;
            }
            if let Some(any) = access.get("scopes_any") {
                control.required_scopes_any = Some(self.strings(any, &format!("{at}/scopes_any"))?);
            }
            if let Some(resource) = access.get("resource") {
                let at = format!("{at}/resource");
                let resource = resource
                    .as_object()
                    .ok_or_else(|| (self.fail)(&at, "`resource` is a JSON object".into()))?;
                self.known_keys(resource, &at, &["type", "action", "id"])?;
                control.resource_type = self.string(resource, "type", &at, true)?;
                control.resource_action = self.string(resource, "action", &at, true)?;
                spec = spec.with_resource_id_path(
                    self.string(resource, "id", &at, true)?.unwrap_or_default(),
                );
            }
            spec = spec.with_access(control);
        }
        match self.string(op, "visibility", pointer, false)?.as_deref() {
            None | Some("external") => {}
            Some("internal") => spec = spec.with_visibility(Visibility::Internal),
            Some(other) => {
                return Err((self.fail)(
                    &format!("{pointer}/visibility"),
                    format!("visibility `{other}` must be external or internal"),
                ));
            }
        }
        match op.get("deprecated") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => spec = spec.deprecated(),
            Some(_) => {
                return Err((self.fail)(
                    &format!("{pointer}/deprecated"),
                    "`deprecated` must be true or false".into(),
                ));
            }
        }
        match op.get("resumable") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) if kind == OpType::Subscription => spec = spec.resumable(),
            Some(Value::Bool(true)) => {
                return Err((self.fail)(
                    &format!("{pointer}/resumable"),
                    "only a subscription can be resumable".into(),
                ));
            }
            Some(_) => {
                return Err((self.fail)(
                    &format!("{pointer}/resumable"),
                    "`resumable` must be true or false".into(),
                ));
            }
        }
        spec.validate()
            .map_err(|e| (self.fail)(pointer, e.to_string()))?;
        Ok(spec)
    }

    /// Refuses `$ref`s that do not name a `$defs` entry of this file, and unsupported keywords.
    fn check_schema(
        &self,
        schema: &Value,
        pointer: &str,
        defs: &Map<String, Value>,
    ) -> Result<(), CodegenError> {
        match schema {
            Value::Bool(_) => Ok(()),
            Value::Object(map) => {
                for (key, value) in map {
                    let at = format!("{pointer}/{}", escape(key));
                    if UNSUPPORTED_KEYWORDS.contains(&key.as_str()) {
                        return Err((self.fail)(
                            &at,
                            format!(
                                "`{key}` is not supported: the generated Rust types cannot express it"
                            ),
                        ));
                    }
                    if key == "$ref" {
                        let reference = value
                            .as_str()
                            .ok_or_else(|| (self.fail)(&at, "`$ref` must be a string".into()))?;
                        let Some(name) = reference.strip_prefix("#/$defs/") else {
                            return Err((self.fail)(
                                &at,
                                format!(
                                    "bad $ref `{reference}`: only `#/$defs/<name>` references to this file's $defs are supported"
                                ),
                            ));
                        };
                        if !defs.contains_key(&unescape(name)) {
                            return Err((self.fail)(
                                &at,
                                format!(
                                    "bad $ref `{reference}`: there is no `$defs/{name}` in this file"
                                ),
                            ));
                        }
                        continue;
                    }
                    let key = key.as_str();
                    if keywords::MAP.contains(&key) {
                        if let Value::Object(children) = value {
                            for (name, child) in children {
                                self.check_schema(child, &format!("{at}/{}", escape(name)), defs)?;
                            }
                        }
                    } else if keywords::LIST.contains(&key) {
                        if let Value::Array(children) = value {
                            for (i, child) in children.iter().enumerate() {
                                self.check_schema(child, &format!("{at}/{i}"), defs)?;
                            }
                        }
                    } else if keywords::SINGLE.contains(&key) {
                        self.check_schema(value, &at, defs)?;
                    }
                }
                Ok(())
            }
            _ => Err((self.fail)(
                pointer,
                "a schema is a JSON object or a boolean".into(),
            )),
        }
    }
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref")
                && let Some(name) = reference.strip_prefix("#/$defs/")
            {
                out.insert(unescape(name));
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// `schema` with the file's `$defs` it reaches (transitively) copied in, so it stands alone.
fn self_contained(schema: &Value, defs: &Map<String, Value>) -> Value {
    let mut needed = BTreeSet::new();
    collect_refs(schema, &mut needed);
    let mut included: BTreeMap<String, Value> = BTreeMap::new();
    while let Some(name) = needed.iter().find(|n| !included.contains_key(*n)).cloned() {
        let def = defs.get(&name).cloned().unwrap_or(Value::Bool(true));
        collect_refs(&def, &mut needed);
        included.insert(name, def);
    }
    if included.is_empty() {
        return schema.clone();
    }
    let mut schema = match schema {
        Value::Bool(true) => json!({}),
        other => other.clone(),
    };
    if let Value::Object(map) = &mut schema {
        let local = map.entry("$defs").or_insert_with(|| json!({}));
        if let Value::Object(local) = local {
            for (name, def) in included {
                local.entry(name).or_insert(def);
            }
        }
    }
    schema
}

/// Deserializes any JSON and fails on the first object key that appears twice, naming it by
/// pointer (pointer and message separated by U+001F in the error text).
struct NoDuplicateKeys;

struct Checker {
    pointer: String,
}

impl<'de> de::DeserializeSeed<'de> for Checker {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checker {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Checker {
                pointer: format!("{}/{i}", self.pointer),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let pointer = format!("{}/{}", self.pointer, escape(&key));
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "{pointer}\u{1f}`{key}` appears twice in the same object"
                )));
            }
            map.next_value_seed(Checker { pointer })?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(
            Checker {
                pointer: String::new(),
            },
            deserializer,
        )?;
        Ok(NoDuplicateKeys)
    }
}
