//! The normalisation pass: real-world schemas rewritten, before the draft-07 conversion
//! ([`crate::convert`]), into shapes typify turns into faithful Rust types.
//!
//! Every rewrite either keeps the meaning exactly, or widens it — the generated type accepts a
//! superset of the schema's values — and then says so as a [`Warning`] naming the place. Either
//! way the runtime still validates every call against the real schema, so a widened type
//! never lets a bad value through a node; it only types it more loosely in Rust.
//!
//! | pattern | becomes | |
//! |---|---|---|
//! | `const: v` | `enum: [v]` with `v`'s type | exact (typify reads a one-value enum as a tag, so a `oneOf` of objects told apart by a `const` property becomes an internally tagged enum) |
//! | `enum` whose values have several JSON types, no `type` | `oneOf` of one typed `enum` per type | exact |
//! | `$ref: "#"` (the root) | the root moved into `$defs` | exact |
//! | `$ref` into the middle of a definition (`#/$defs/A/properties/b`) | that schema copied into `$defs` under a name of its own | exact |
//! | `if`/`then`/`else` | left out: the type is the schema without the condition | widened, warning |
//! | `not` | left out | widened, warning |
//! | `unevaluatedProperties`/`unevaluatedItems` | left out | widened, warning |
//! | a tuple that may be longer or shorter than its `prefixItems` | a list of any of its item types | widened, warning |
//! | a `default` its own schema refuses | left out | warning |
//! | a `$ref` to another file | any JSON value | widened, warning |
//! | definitions whose Rust names clash (`Default`; `a/b` and `a~b`) | renamed (`DefaultDef`, a number) | exact |

use alknet_spec::keywords::{self, escape, unescape};
use heck::ToUpperCamelCase;
use serde_json::{Map, Value, json};

/// An approximation the generator made, and where (a JSON Pointer into the input file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where, as a JSON Pointer into the service file or bundle.
    pub pointer: String,
    /// What was approximated, in a sentence.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at `{}`: {}", self.pointer, self.message)
        }
    }
}

/// Normalises one schema of the IR (with its own `$defs`); `pointer` is where it sits in the
/// file, for warnings.
pub fn normalise(schema: &Value, pointer: &str, warnings: &mut Vec<Warning>) -> Value {
    normalise_avoiding(schema, pointer, warnings, &[])
}

/// [`normalise`], also renaming definitions whose Rust names are in `avoid` (names typify
/// gave to a type of its own as well, found by a first try).
pub fn normalise_avoiding(
    schema: &Value,
    pointer: &str,
    warnings: &mut Vec<Warning>,
    avoid: &[String],
) -> Value {
    let mut schema = schema.clone();
    if !schema.is_object() {
        return schema;
    }
    hoist_root(&mut schema);
    hoist_deep_references(&mut schema);
    rename_clashing_definitions(&mut schema, avoid);
    walk(&mut schema, pointer, warnings);
    schema
}

/// Type names the generated code relies on from the prelude and std: a definition named so
/// would shadow them inside the generated `types` module.
const RESERVED_TYPE_NAMES: &[&str] = &[
    "Box",
    "Clone",
    "Copy",
    "Debug",
    "Default",
    "Display",
    "Eq",
    "Err",
    "Error",
    "From",
    "FromStr",
    "Hash",
    "Into",
    "None",
    "Ok",
    "Option",
    "Ord",
    "PartialEq",
    "PartialOrd",
    "Result",
    "Self",
    "Send",
    "Sized",
    "Some",
    "String",
    "Sync",
    "ToString",
    "TryFrom",
    "Vec",
];

/// Definitions whose Rust names would clash — with a reserved name (`Default`), or with each
/// other (`a/b` and `a~b` both make `AB`) — are renamed: the type name gets `Def`, or a number,
/// in the definitions' sorted order, so the same file always gives the same names.
fn rename_clashing_definitions(schema: &mut Value, avoid: &[String]) {
    let Some(Value::Object(defs)) = schema.get("$defs") else {
        return;
    };
    let mut taken = std::collections::BTreeSet::new();
    let mut renames: Vec<(String, String)> = Vec::new();
    for name in defs.keys() {
        let rust = name.to_upper_camel_case();
        let reserved = RESERVED_TYPE_NAMES.contains(&rust.as_str()) || avoid.contains(&rust);
        if !reserved && taken.insert(rust.clone()) {
            continue;
        }
        let base = if reserved { format!("{rust}Def") } else { rust };
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) || defs.contains_key(&candidate) {
            candidate = format!("{base}{n}");
            n += 1;
        }
        taken.insert(candidate.clone());
        renames.push((name.clone(), candidate));
    }
    if renames.is_empty() {
        return;
    }
    if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
        for (from, to) in &renames {
            if let Some(def) = defs.remove(from) {
                defs.insert(to.clone(), def);
            }
        }
    }
    rewrite_references(schema, &|reference| {
        let name = unescape(reference.strip_prefix("#/$defs/")?);
        renames
            .iter()
            .find(|(from, _)| *from == name)
            .map(|(_, to)| format!("#/$defs/{}", escape(to)))
    });
}

/// `$ref: "#"` anywhere: the root (without its `$defs`) becomes a definition, named after its
/// title, and the root refers to it.
fn hoist_root(schema: &mut Value) {
    if !has_reference(schema, &|r| r == "#") {
        return;
    }
    let defs = schema
        .as_object_mut()
        .and_then(|m| m.remove("$defs"))
        .and_then(|d| match d {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
    let title = schema
        .get("title")
        .and_then(Value::as_str)
        .map(|t| t.to_upper_camel_case())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Root".into());
    let name = free_name(&defs, &title);
    let mut root = std::mem::take(schema);
    rewrite_references(&mut root, &|r| {
        (r == "#").then(|| format!("#/$defs/{name}"))
    });
    let mut defs = defs;
    defs.insert(name.clone(), root);
    *schema = json!({"$ref": format!("#/$defs/{name}"), "$defs": defs});
}

/// References into the middle of a schema (`#/$defs/A/properties/b`, `#/properties/x`): the
/// target is copied into `$defs` under a name of its own and the references point there.
fn hoist_deep_references(schema: &mut Value) {
    // Each round hoists what the last one's copies refer to; a bound keeps a cycle of
    // ever-deeper references from running forever.
    for _ in 0..16 {
        let mut deep = Vec::new();
        collect_references(schema, &mut |r| {
            if is_deep(r) && !deep.iter().any(|d: &String| d == r) {
                deep.push(r.to_owned());
            }
        });
        if deep.is_empty() {
            return;
        }
        let mut renames = Vec::new();
        for reference in deep {
            let target_pointer = reference.trim_start_matches('#');
            let Some(target) = schema.pointer(target_pointer).cloned() else {
                continue; // unresolvable: typify reports it, with its place
            };
            let defs = schema
                .as_object_mut()
                .expect("an object")
                .entry("$defs")
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(defs) = defs else { return };
            let wanted = target_pointer
                .split('/')
                .filter(|s| !s.is_empty() && *s != "$defs" && *s != "definitions")
                .map(unescape)
                .collect::<Vec<_>>()
                .join("_")
                .to_upper_camel_case();
            let name = free_name(defs, &wanted);
            defs.insert(name.clone(), target);
            renames.push((reference, format!("#/$defs/{}", escape(&name))));
        }
        if renames.is_empty() {
            return;
        }
        rewrite_references(schema, &|r| {
            renames
                .iter()
                .find(|(from, _)| from == r)
                .map(|(_, to)| to.clone())
        });
    }
}

/// A local reference that is neither the root nor a whole definition.
fn is_deep(reference: &str) -> bool {
    let Some(path) = reference.strip_prefix("#/") else {
        return false;
    };
    let segments: Vec<&str> = path.split('/').collect();
    !(segments.len() == 2 && (segments[0] == "$defs" || segments[0] == "definitions"))
}

fn free_name(defs: &Map<String, Value>, wanted: &str) -> String {
    let base = if wanted.is_empty() { "Schema" } else { wanted };
    let mut name = base.to_owned();
    let mut n = 2;
    while defs.contains_key(&name) {
        name = format!("{base}{n}");
        n += 1;
    }
    name
}

fn has_reference(schema: &Value, test: &dyn Fn(&str) -> bool) -> bool {
    let mut found = false;
    collect_references(schema, &mut |r| found |= test(r));
    found
}

/// Calls `visit` with every `$ref` in `schema` (schema positions only, not data).
fn collect_references(schema: &Value, visit: &mut dyn FnMut(&str)) {
    if let Value::Object(map) = schema {
        if let Some(Value::String(reference)) = map.get("$ref") {
            visit(reference);
        }
        for (key, child) in map {
            for_each_subschema(key, child, &mut |s| collect_references(s, visit));
        }
    }
}

fn rewrite_references(schema: &mut Value, rename: &dyn Fn(&str) -> Option<String>) {
    if let Value::Object(map) = schema {
        if let Some(Value::String(reference)) = map.get_mut("$ref")
            && let Some(renamed) = rename(reference)
        {
            *reference = renamed;
        }
        for (key, child) in map.iter_mut() {
            for_each_subschema_mut(key, child, &mut |s| rewrite_references(s, rename));
        }
    }
}

fn for_each_subschema(key: &str, value: &Value, visit: &mut dyn FnMut(&Value)) {
    if keywords::SINGLE.contains(&key) {
        visit(value);
    } else if keywords::LIST.contains(&key) {
        value.as_array().into_iter().flatten().for_each(visit);
    } else if keywords::MAP.contains(&key) {
        value
            .as_object()
            .into_iter()
            .flatten()
            .for_each(|(_, v)| visit(v));
    }
}

fn for_each_subschema_mut(key: &str, value: &mut Value, visit: &mut dyn FnMut(&mut Value)) {
    if keywords::SINGLE.contains(&key) {
        visit(value);
    } else if keywords::LIST.contains(&key) {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(visit);
        }
    } else if keywords::MAP.contains(&key)
        && let Value::Object(map) = value
    {
        map.values_mut().for_each(visit);
    }
}

/// The per-node rewrites, depth first.
fn walk(schema: &mut Value, at: &str, warnings: &mut Vec<Warning>) {
    let Value::Object(map) = schema else { return };
    let mut warn = |key: &str, message: &str| {
        warnings.push(Warning {
            pointer: format!("{at}/{}", escape(key)),
            message: message.to_owned(),
        });
    };

    if let Some(Value::String(reference)) = map.get("$ref")
        && !reference.starts_with('#')
    {
        warn(
            "$ref",
            &format!("`{reference}` is in another file: typed as any JSON value"),
        );
        map.remove("$ref");
    }
    for key in ["if", "then", "else"] {
        if map.remove(key).is_some() && key == "if" {
            warn(
                "if",
                "`if`/`then`/`else` left out of the type: it is the schema without the condition (calls are still checked against all of it)",
            );
        }
    }
    if map.contains_key("then") || map.contains_key("else") {
        map.remove("then");
        map.remove("else");
    }
    if map.remove("not").is_some() {
        warn(
            "not",
            "`not` left out of the type: it accepts what the rest of the schema accepts (calls are still checked against all of it)",
        );
    }
    for key in ["unevaluatedProperties", "unevaluatedItems"] {
        if map.remove(key).is_some() {
            warn(
                key,
                &format!("`{key}` left out of the type (calls are still checked against it)"),
            );
        }
    }
    if let Some(constant) = map.remove("const") {
        if !map.contains_key("enum") {
            if !map.contains_key("type")
                && let Some(kind) = json_type(&constant)
            {
                map.insert("type".into(), json!(kind));
            }
            map.insert("enum".into(), json!([constant]));
        }
    }
    split_mixed_enum(map);
    widen_colliding_enum(map, &mut warn);
    loosen_open_tuple(map, &mut warn);

    for (key, child) in map.iter_mut() {
        let here = format!("{at}/{}", escape(key));
        if keywords::SINGLE.contains(&key.as_str()) {
            walk(child, &here, warnings);
        } else if keywords::LIST.contains(&key.as_str()) {
            if let Value::Array(items) = child {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, &format!("{here}/{i}"), warnings);
                }
            }
        } else if keywords::MAP.contains(&key.as_str())
            && let Value::Object(children) = child
        {
            for (name, item) in children.iter_mut() {
                walk(item, &format!("{here}/{}", escape(name)), warnings);
            }
        }
    }
    drop_bad_default(map, at, warnings);
}

fn json_type(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

/// `enum: [1, "a", true]` without a single `type`: one typed enum per JSON type, under `oneOf`
/// (typify refuses an enum whose values it cannot give one Rust type).
fn split_mixed_enum(map: &mut Map<String, Value>) {
    let Some(Value::Array(values)) = map.get("enum") else {
        return;
    };
    if matches!(map.get("type"), Some(Value::String(_))) {
        return;
    }
    let mut groups: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for value in values {
        let Some(kind) = json_type(value) else {
            continue;
        };
        // An integer-valued number joins the numbers when there are some.
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, members)) => members.push(value.clone()),
            None => groups.push((kind, vec![value.clone()])),
        }
    }
    if let (Some(i), Some(n)) = (
        groups.iter().position(|(k, _)| *k == "integer"),
        groups.iter().position(|(k, _)| *k == "number"),
    ) {
        let (_, integers) = groups.remove(i);
        let n = if i < n { n - 1 } else { n };
        groups[n].1.extend(integers);
    }
    // One type besides null is what typify reads already (an optional enum).
    if groups.iter().filter(|(kind, _)| *kind != "null").count() < 2 {
        return;
    }
    map.remove("enum");
    map.remove("type");
    let alternatives: Vec<Value> = groups
        .into_iter()
        .map(|(kind, members)| {
            if kind == "null" {
                json!({"type": "null"})
            } else {
                json!({"type": kind, "enum": members})
            }
        })
        .collect();
    // The alternatives have different JSON types, so exactly one matches: `oneOf`, which
    // typify makes an untagged enum (its `anyOf` handling merges members into one struct and can
    // grow without bound when nested under `allOf`).
    match map.get("oneOf") {
        Some(Value::Array(_)) => {
            let existing = map.remove("oneOf").expect("present");
            let mut all = match map.remove("allOf") {
                Some(Value::Array(all)) => all,
                _ => Vec::new(),
            };
            all.push(json!({"oneOf": existing}));
            all.push(json!({"oneOf": alternatives}));
            map.insert("allOf".into(), Value::Array(all));
        }
        _ => {
            map.insert("oneOf".into(), Value::Array(alternatives));
        }
    }
}

/// A string enum whose values typify cannot turn into distinct Rust variant names (`z` and
/// `Z`; `-`, `_` and `/`, which have no letters at all) is typed as a plain string.
fn widen_colliding_enum(map: &mut Map<String, Value>, warn: &mut dyn FnMut(&str, &str)) {
    let Some(Value::Array(values)) = map.get("enum") else {
        return;
    };
    let names: Vec<String> = values
        .iter()
        .filter_map(Value::as_str)
        .map(|v| {
            v.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .collect();
    if names.len() < values.len() {
        return; // not a string enum
    }
    let mut seen = std::collections::BTreeSet::new();
    let collides = names
        .iter()
        .any(|n| n.is_empty() || !seen.insert(n.clone()));
    if collides {
        map.remove("enum");
        warn(
            "enum",
            "values that cannot be told apart as Rust variant names: typed as a string",
        );
    }
}

/// A tuple whose length is not fixed (`prefixItems` without `items: false` and matching
/// bounds) becomes a list of any of its item types (typify types only fixed-length tuples).
fn loosen_open_tuple(map: &mut Map<String, Value>, warn: &mut dyn FnMut(&str, &str)) {
    let Some(Value::Array(prefix)) = map.get("prefixItems") else {
        return;
    };
    let length = prefix.len() as u64;
    let closed = map.get("items") == Some(&Value::Bool(false));
    let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    let max = map.get("maxItems").and_then(Value::as_u64);
    if closed && min == length && max.is_none_or(|m| m == length) {
        return;
    }
    let mut members = map
        .remove("prefixItems")
        .and_then(|p| match p {
            Value::Array(items) => Some(items),
            _ => None,
        })
        .unwrap_or_default();
    match map.remove("items") {
        Some(Value::Bool(false)) | None => {}
        Some(Value::Bool(true)) => members.push(json!({})),
        Some(rest) => members.push(rest),
    }
    members.dedup();
    map.insert(
        "items".into(),
        if members.len() == 1 {
            members.remove(0)
        } else {
            json!({"anyOf": members})
        },
    );
    warn(
        "prefixItems",
        "a tuple whose length may vary: typed as a list of any of its item types",
    );
}

/// A `default` the schema itself refuses would make generated code that cannot build (typify
/// refuses it): it is left out. Judged on the schema's own `type` and `enum` — the mistakes
/// real schemas make (a string default on a boolean, a value the enum lost); deeper ones
/// reach typify, which names the place.
fn drop_bad_default(map: &mut Map<String, Value>, at: &str, warnings: &mut Vec<Warning>) {
    let Some(default) = map.get("default") else {
        return;
    };
    let type_ok = match map.get("type") {
        None => true,
        Some(Value::String(t)) => has_type(default, t),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .any(|t| has_type(default, t)),
        Some(_) => true,
    };
    let enum_ok = match map.get("enum") {
        Some(Value::Array(values)) => values.iter().any(|v| same_value(v, default)),
        _ => true,
    };
    let bound = |key: &str| map.get(key).and_then(Value::as_f64);
    let bounds_ok = match default.as_f64() {
        Some(n) => {
            bound("minimum").is_none_or(|m| n >= m)
                && bound("maximum").is_none_or(|m| n <= m)
                && bound("exclusiveMinimum").is_none_or(|m| n > m)
                && bound("exclusiveMaximum").is_none_or(|m| n < m)
        }
        None => match default.as_str() {
            Some(text) => {
                let length = text.chars().count() as f64;
                bound("minLength").is_none_or(|m| length >= m)
                    && bound("maxLength").is_none_or(|m| length <= m)
            }
            None => true,
        },
    };
    if !(type_ok && enum_ok && bounds_ok) {
        warnings.push(Warning {
            pointer: format!("{at}/default"),
            message: format!("the default {default} does not match its own schema: left out"),
        });
        map.remove("default");
    }
}

/// Leaves out every non-null `default` in `schema` (a definition typify refused for one of
/// its defaults), with a warning each; returns how many. A null default says what an optional
/// field says anyway, so it goes silently.
pub(crate) fn strip_defaults(schema: &mut Value, at: &str, warnings: &mut Vec<Warning>) -> usize {
    let Value::Object(map) = schema else { return 0 };
    let mut stripped = 0;
    if let Some(default) = map.remove("default")
        && !default.is_null()
    {
        warnings.push(Warning {
            pointer: format!("{at}/default"),
            message: format!(
                "typify cannot give the default {default} this type: left out (the field is optional instead)"
            ),
        });
        stripped += 1;
    }
    for (key, child) in map.iter_mut() {
        let here = format!("{at}/{}", escape(key));
        if keywords::SINGLE.contains(&key.as_str()) {
            stripped += strip_defaults(child, &here, warnings);
        } else if keywords::LIST.contains(&key.as_str()) {
            if let Value::Array(items) = child {
                for (i, item) in items.iter_mut().enumerate() {
                    stripped += strip_defaults(item, &format!("{here}/{i}"), warnings);
                }
            }
        } else if keywords::MAP.contains(&key.as_str())
            && let Value::Object(children) = child
        {
            for (name, item) in children.iter_mut() {
                stripped += strip_defaults(item, &format!("{here}/{}", escape(name)), warnings);
            }
        }
    }
    stripped
}

/// Whether `value` is of the JSON Schema type `kind` (an integer-valued number is an integer).
fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "integer" => value
            .as_f64()
            .is_some_and(|n| n.fract() == 0.0 && n.is_finite()),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(schema: Value) -> (Value, Vec<Warning>) {
        let mut warnings = Vec::new();
        let out = normalise(&schema, "/s", &mut warnings);
        (out, warnings)
    }

    #[test]
    fn exact_rewrites_say_nothing() {
        let (out, warnings) = normalised(json!({
            "oneOf": [
                {"type": "object", "properties": {"kind": {"const": "a"}}},
                {"type": "object", "properties": {"kind": {"const": 2}}}
            ],
            "properties": {
                "mixed": {"enum": ["a", 1, 2.5, null]},
                "optional": {"enum": ["a", null]}
            }
        }));
        assert_eq!(out["properties"]["optional"], json!({"enum": ["a", null]}));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            out["oneOf"][0]["properties"]["kind"],
            json!({"type": "string", "enum": ["a"]})
        );
        assert_eq!(
            out["oneOf"][1]["properties"]["kind"],
            json!({"type": "integer", "enum": [2]})
        );
        assert_eq!(
            out["properties"]["mixed"],
            json!({"oneOf": [
                {"type": "string", "enum": ["a"]},
                {"type": "number", "enum": [2.5, 1]},
                {"type": "null"}
            ]})
        );
    }

    #[test]
    fn references_into_definitions_and_the_root_are_hoisted() {
        let (out, _) = normalised(json!({
            "title": "tree node",
            "properties": {
                "children": {"type": "array", "items": {"$ref": "#"}},
                "size": {"$ref": "#/$defs/Box/properties/width"}
            },
            "$defs": {"Box": {"properties": {"width": {"type": "integer"}}}}
        }));
        assert_eq!(out["$ref"], "#/$defs/TreeNode");
        let node = &out["$defs"]["TreeNode"];
        assert_eq!(
            node["properties"]["children"]["items"]["$ref"],
            "#/$defs/TreeNode"
        );
        let size = node["properties"]["size"]["$ref"].as_str().unwrap();
        let name = size.strip_prefix("#/$defs/").unwrap();
        assert_eq!(out["$defs"][name], json!({"type": "integer"}));
    }

    #[test]
    fn clashing_definition_names_are_made_unique() {
        let (out, warnings) = normalised(json!({
            "properties": {
                "a": {"$ref": "#/$defs/Default"},
                "b": {"$ref": "#/$defs/a~1b"},
                "c": {"$ref": "#/$defs/a~0b"}
            },
            "$defs": {"Default": {"type": "string"}, "a/b": {"type": "integer"}, "a~b": {"type": "boolean"}}
        }));
        assert!(warnings.is_empty());
        let defs = out["$defs"].as_object().unwrap();
        let names: Vec<&str> = defs.keys().map(String::as_str).collect();
        assert!(
            names.contains(&"DefaultDef") && !names.contains(&"Default"),
            "{names:?}"
        );
        let target = |p: &str| {
            let reference = out["properties"][p]["$ref"].as_str().unwrap();
            let name = unescape(reference.strip_prefix("#/$defs/").unwrap());
            out["$defs"][name.as_str()]["type"].clone()
        };
        assert_eq!(target("a"), "string");
        assert_eq!(target("b"), "integer");
        assert_eq!(target("c"), "boolean");
        let rust: std::collections::BTreeSet<String> =
            defs.keys().map(|n| n.to_upper_camel_case()).collect();
        assert_eq!(rust.len(), 3, "{names:?}");
    }

    #[test]
    fn approximations_are_warnings_with_their_place() {
        let (out, warnings) = normalised(json!({
            "type": "object",
            "if": {"required": ["a"]}, "then": {"required": ["b"]},
            "properties": {
                "n": {"type": "integer", "not": {"const": 3}, "default": "x"},
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
                "fixed": {"type": "array", "prefixItems": [{"type": "string"}], "items": false, "minItems": 1},
                "elsewhere": {"$ref": "other.json#/x"}
            },
            "unevaluatedProperties": false
        }));
        let mut places: Vec<&str> = warnings.iter().map(|w| w.pointer.as_str()).collect();
        places.sort();
        assert_eq!(
            places,
            [
                "/s/if",
                "/s/properties/elsewhere/$ref",
                "/s/properties/n/default",
                "/s/properties/n/not",
                "/s/properties/pair/prefixItems",
                "/s/unevaluatedProperties",
            ]
        );
        assert!(out.get("if").is_none() && out.get("then").is_none());
        assert_eq!(
            out["properties"]["pair"]["items"],
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
        assert!(out["properties"]["fixed"].get("prefixItems").is_some());
        assert_eq!(out["properties"]["n"], json!({"type": "integer"}));
        assert_eq!(out["properties"]["elsewhere"], json!({}));
    }
}
