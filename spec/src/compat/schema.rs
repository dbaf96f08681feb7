//! Directional comparison of two JSON Schemas (2020-12, as the IR holds them).
//!
//! For an **input**, every value the old schema accepted must still be accepted: the new
//! schema may only widen. For an **output**, every value the new schema allows must have been
//! allowed before: the new schema may only narrow. The comparison walks both schemas together
//! and reports each place where that fails, with its JSON pointer.
//!
//! Sound for what the IR uses: `$ref` into the root's `$defs` (with a guard against cycles),
//! `type` (a string or an array, so nullable; `integer` is a `number`), `enum`/`const`,
//! `format`, numeric and length bounds, `pattern`, objects (`properties`, `required`,
//! `additionalProperties`), arrays (`items`, `prefixItems`) and unions (`anyOf`/`oneOf`, each
//! old alternative matched to a new one that covers it). Any other keyword that differs is a
//! `SCHEMA_UNDECIDED` warning: the checker says it could not judge rather than passing it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::Finding;
use super::rules::*;
use crate::keywords::escape as escape_pointer;

/// Which way values flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Callers send it: the new schema must accept all the old one did.
    Input,
    /// Callers receive it: the new schema must allow nothing the old one did not.
    Output,
}

/// Compares `old` and `new` (each the root of its own `$defs`), reporting under `pointer`.
pub(crate) fn compare(
    old: &Value,
    new: &Value,
    direction: Direction,
    pointer: &str,
) -> Vec<Finding> {
    let mut walk = Walk {
        old_root: old,
        new_root: new,
        same_defs: old.get("$defs") == new.get("$defs"),
        direction,
        visited: HashSet::new(),
        findings: Vec::new(),
    };
    walk.compare(old, new, pointer.to_owned());
    walk.findings
}

/// Keywords that describe and do not constrain: their changes are not contract changes.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
    "$schema",
    "$id",
    "$defs",
    "definitions",
    "contentMediaType",
    "contentEncoding",
];

/// Keywords this module reasons about.
const UNDERSTOOD: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "pattern",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "anyOf",
    "oneOf",
];

struct Walk<'a> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// Both roots hold the same `$defs`: equal text is an equal schema. Otherwise the same
    /// `$ref` may name different definitions, and only schemas without one can be skipped.
    same_defs: bool,
    direction: Direction,
    /// `$ref` pairs already being compared: a recursive type is judged once.
    visited: HashSet<(String, String)>,
    findings: Vec<Finding>,
}

/// A lower or upper bound, and which way is stricter.
#[derive(Clone, Copy)]
enum Bound {
    /// Larger is stricter (`minimum`, `minLength`, …).
    Lower,
    /// Smaller is stricter (`maximum`, `maxLength`, …).
    Upper,
}

const BOUNDS: &[(&str, Bound)] = &[
    ("minimum", Bound::Lower),
    ("exclusiveMinimum", Bound::Lower),
    ("minLength", Bound::Lower),
    ("minItems", Bound::Lower),
    ("minProperties", Bound::Lower),
    ("maximum", Bound::Upper),
    ("exclusiveMaximum", Bound::Upper),
    ("maxLength", Bound::Upper),
    ("maxItems", Bound::Upper),
    ("maxProperties", Bound::Upper),
];

impl Walk<'_> {
    fn push(&mut self, rule: &'static str, pointer: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding::new(rule, pointer, message));
    }

    fn input(&self) -> bool {
        self.direction == Direction::Input
    }

    /// Whether two schemas are the same without looking closer.
    fn same(&self, old: &Value, new: &Value) -> bool {
        old == new && (self.same_defs || !has_ref(old))
    }

    fn compare(&mut self, old: &Value, new: &Value, pointer: String) {
        if self.same(old, new) {
            return;
        }
        let (old, old_ref) = resolve(self.old_root, old);
        let (new, new_ref) = resolve(self.new_root, new);
        if let (Some(o), Some(n)) = (&old_ref, &new_ref) {
            if !self.visited.insert((o.clone(), n.clone())) {
                return;
            }
        }
        for (side, unresolved) in [("old", &old_ref), ("new", &new_ref)] {
            if let Some(reference) = unresolved.as_ref().filter(|r| r.starts_with('!')) {
                self.push(
                    SCHEMA_UNDECIDED,
                    pointer.clone(),
                    format!(
                        "the {side} schema's `$ref` {} does not resolve to a local `$defs` entry",
                        &reference[1..]
                    ),
                );
                return;
            }
        }
        let (old, new) = (as_object(&old), as_object(&new));
        if self.same(&Value::Object(old.clone()), &Value::Object(new.clone())) {
            return;
        }
        // `false` accepts nothing.
        match (is_nothing(&old), is_nothing(&new)) {
            (true, true) => return,
            (true, false) => {
                if !self.input() {
                    self.push(
                        OUTPUT_TYPE_WIDENED,
                        pointer,
                        "was never present, now may be",
                    );
                } else {
                    self.push(
                        INPUT_WIDENED,
                        pointer,
                        "accepted nothing, now accepts values",
                    );
                }
                return;
            }
            (false, true) => {
                if self.input() {
                    self.push(INPUT_TYPE_NARROWED, pointer, "no longer accepts any value");
                } else {
                    self.push(OUTPUT_NARROWED, pointer, "is never present any more");
                }
                return;
            }
            (false, false) => {}
        }
        self.undecided(&old, &new, &pointer);
        let handled_unions = self.unions(&old, &new, &pointer);
        if handled_unions {
            return;
        }
        self.types(&old, &new, &pointer);
        self.enums(&old, &new, &pointer);
        self.format(&old, &new, &pointer);
        self.bounds(&old, &new, &pointer);
        self.objects(&old, &new, &pointer);
        self.arrays(&old, &new, &pointer);
    }

    /// Keywords outside what this module understands that differ.
    fn undecided(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for key in keys {
            if ANNOTATIONS.contains(&key.as_str()) || UNDERSTOOD.contains(&key.as_str()) {
                continue;
            }
            if old.get(key) != new.get(key) {
                self.push(
                    SCHEMA_UNDECIDED,
                    format!("{pointer}/{}", escape_pointer(key)),
                    format!("`{key}` changed, and the checker does not reason about it"),
                );
            }
        }
    }

    /// `anyOf`/`oneOf` on either side: each old alternative (input) or new alternative
    /// (output) must be covered by one of the other side. Returns whether it handled the pair.
    fn unions(
        &mut self,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
        pointer: &str,
    ) -> bool {
        let old_union = union_of(old);
        let new_union = union_of(new);
        if old_union.is_none() && new_union.is_none() {
            return false;
        }
        let old_key = old_union.as_ref().map_or("anyOf", |(k, _)| *k);
        let new_key = new_union.as_ref().map_or("anyOf", |(k, _)| *k);
        let old_variants = old_union
            .map(|(_, v)| v)
            .unwrap_or_else(|| vec![Value::Object(without_unions(old))]);
        let new_variants = new_union
            .map(|(_, v)| v)
            .unwrap_or_else(|| vec![Value::Object(without_unions(new))]);
        // Keywords next to the union apply to every alternative.
        let old_variants: Vec<Value> = old_variants.into_iter().map(|v| merged(old, v)).collect();
        let new_variants: Vec<Value> = new_variants.into_iter().map(|v| merged(new, v)).collect();
        let (from, to, from_key, to_key) = if self.input() {
            (&old_variants, &new_variants, old_key, new_key)
        } else {
            (&new_variants, &old_variants, new_key, old_key)
        };
        for (i, variant) in from.iter().enumerate() {
            // The first alternative of the other side that covers it, quietly.
            let covered = to.iter().enumerate().find_map(|(j, other)| {
                let (o, n) = if self.input() {
                    (variant, other)
                } else {
                    (other, variant)
                };
                let findings = self.scratch(o, n, format!("{pointer}/{to_key}/{j}"));
                findings
                    .iter()
                    .all(|f| rule(f.rule).is_some_and(|r| r.severity != super::Severity::Breaking))
                    .then_some(findings)
            });
            match covered {
                Some(findings) => self.findings.extend(findings),
                None if from.len() == to.len() && from.len() > 1 => {
                    // Same number of alternatives: most likely edited in place; say how.
                    let (o, n) = if self.input() {
                        (variant, &to[i])
                    } else {
                        (&to[i], variant)
                    };
                    self.compare(o, n, format!("{pointer}/{to_key}/{i}"));
                }
                None if from.len() == 1 && to.len() == 1 => {
                    let (o, n) = if self.input() {
                        (variant, &to[0])
                    } else {
                        (&to[0], variant)
                    };
                    self.compare(o, n, pointer.to_owned());
                }
                None if self.input() => self.push(
                    INPUT_VARIANT_REMOVED,
                    format!("{pointer}/{from_key}/{i}"),
                    "an alternative old callers could send is no longer accepted",
                ),
                None => self.push(
                    OUTPUT_VARIANT_ADDED,
                    format!("{pointer}/{from_key}/{i}"),
                    "a new alternative old callers do not expect",
                ),
            }
        }
        true
    }

    /// Compares without recording: the findings, for trying matches.
    fn scratch(&mut self, old: &Value, new: &Value, pointer: String) -> Vec<Finding> {
        let saved = std::mem::take(&mut self.findings);
        let visited = self.visited.clone();
        self.compare(old, new, pointer);
        self.visited = visited;
        std::mem::replace(&mut self.findings, saved)
    }

    fn types(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        let (old_types, new_types) = (types_of(old), types_of(new));
        let at = format!("{pointer}/type");
        if self.input() {
            let Some(new_types) = new_types else { return };
            let lost: Vec<&str> = match &old_types {
                None => vec!["any type"],
                Some(old_types) => old_types
                    .iter()
                    .filter(|t| !accepts(&new_types, t))
                    .map(|t| t.as_str())
                    .collect(),
            };
            if !lost.is_empty() {
                self.push(
                    INPUT_TYPE_NARROWED,
                    at,
                    format!("no longer accepts {}", lost.join(", ")),
                );
            } else if old_types.is_some_and(|o| new_types.iter().any(|t| !accepts(&o, t))) {
                self.push(INPUT_WIDENED, at, "accepts more types than before");
            }
        } else {
            let Some(old_types) = old_types else { return };
            let gained: Vec<&str> = match &new_types {
                None => vec!["any type"],
                Some(new_types) => new_types
                    .iter()
                    .filter(|t| !accepts(&old_types, t))
                    .map(|t| t.as_str())
                    .collect(),
            };
            if !gained.is_empty() {
                self.push(
                    OUTPUT_TYPE_WIDENED,
                    at,
                    format!("may now be {}", gained.join(", ")),
                );
            }
        }
    }

    fn enums(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        let (old_enum, new_enum) = (enum_of(old), enum_of(new));
        let at = format!("{pointer}/enum");
        if self.input() {
            let Some(new_enum) = new_enum else {
                if old_enum.is_some() {
                    self.push(INPUT_WIDENED, at, "no longer limited to a set of values");
                }
                return;
            };
            match old_enum {
                None => self.push(INPUT_ENUM_NARROWED, at, "now limited to a set of values"),
                Some(old_enum) => {
                    let lost: Vec<String> = old_enum
                        .iter()
                        .filter(|v| !new_enum.contains(v))
                        .map(Value::to_string)
                        .collect();
                    if !lost.is_empty() {
                        self.push(
                            INPUT_ENUM_NARROWED,
                            at,
                            format!("no longer accepts {}", lost.join(", ")),
                        );
                    }
                }
            }
        } else {
            let Some(old_enum) = old_enum else { return };
            match new_enum {
                None => self.push(
                    OUTPUT_ENUM_WIDENED,
                    at,
                    "no longer limited to a set of values",
                ),
                Some(new_enum) => {
                    let gained: Vec<String> = new_enum
                        .iter()
                        .filter(|v| !old_enum.contains(v))
                        .map(Value::to_string)
                        .collect();
                    if !gained.is_empty() {
                        self.push(
                            OUTPUT_ENUM_WIDENED,
                            at,
                            format!("may now be {}", gained.join(", ")),
                        );
                    }
                }
            }
        }
    }

    fn format(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        let (o, n) = (old.get("format"), new.get("format"));
        if o == n {
            return;
        }
        let at = format!("{pointer}/format");
        let name = |v: Option<&Value>| v.map_or("none".to_owned(), |v| v.to_string());
        if self.input() {
            if n.is_some() {
                self.push(
                    INPUT_FORMAT_NARROWED,
                    at,
                    format!("the format is now {} (was {})", name(n), name(o)),
                );
            } else {
                self.push(INPUT_WIDENED, at, "no longer requires a format");
            }
        } else if o.is_some() {
            self.push(
                OUTPUT_FORMAT_CHANGED,
                at,
                format!("the format is now {} (was {})", name(n), name(o)),
            );
        }
    }

    fn bounds(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        for (key, bound) in BOUNDS {
            let (o, n) = (
                old.get(*key).and_then(Value::as_f64),
                new.get(*key).and_then(Value::as_f64),
            );
            let stricter = match (o, n, bound) {
                (None, None, _) => continue,
                (None, Some(_), _) => true,
                (Some(_), None, _) => false,
                (Some(o), Some(n), Bound::Lower) if n > o => true,
                (Some(o), Some(n), Bound::Upper) if n < o => true,
                (Some(o), Some(n), _) if o == n => continue,
                _ => false,
            };
            self.bound_change(stricter, &format!("{pointer}/{key}"), key);
        }
        // A new or changed `pattern` or `multipleOf` constrains differently: treated as
        // stricter (the checker does not compare regular expressions or divisors).
        for key in ["pattern", "multipleOf"] {
            let (o, n) = (old.get(key), new.get(key));
            if o != n {
                self.bound_change(n.is_some(), &format!("{pointer}/{key}"), key);
            }
        }
        let unique = |m: &Map<String, Value>| m.get("uniqueItems") == Some(&Value::Bool(true));
        if unique(old) != unique(new) {
            self.bound_change(
                unique(new),
                &format!("{pointer}/uniqueItems"),
                "uniqueItems",
            );
        }
    }

    fn bound_change(&mut self, stricter: bool, at: &str, key: &str) {
        match (self.input(), stricter) {
            (true, true) => self.push(INPUT_RANGE_NARROWED, at, format!("`{key}` is stricter")),
            (true, false) => self.push(INPUT_WIDENED, at, format!("`{key}` is looser")),
            (false, false) => self.push(OUTPUT_RANGE_WIDENED, at, format!("`{key}` is looser")),
            (false, true) => self.push(OUTPUT_NARROWED, at, format!("`{key}` is stricter")),
        }
    }

    fn objects(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        let is_object = |m: &Map<String, Value>| {
            m.contains_key("properties")
                || m.contains_key("required")
                || m.contains_key("additionalProperties")
        };
        if !is_object(old) && !is_object(new) {
            return;
        }
        let (old_props, new_props) = (properties(old), properties(new));
        let (old_req, new_req) = (required(old), required(new));
        let old_extra = old
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        let new_extra = new
            .get("additionalProperties")
            .cloned()
            .unwrap_or(Value::Bool(true));
        let closed = |extra: &Value| is_nothing(&as_object(extra));
        let prop_at = |name: &str| format!("{pointer}/properties/{}", escape_pointer(name));
        if self.input() {
            for name in new_req.difference(&old_req) {
                self.push(
                    INPUT_REQUIRED_ADDED,
                    prop_at(name),
                    format!("`{name}` is now required: callers that leave it out are refused"),
                );
            }
            for name in old_req.difference(&new_req) {
                self.push(
                    INPUT_REQUIRED_REMOVED,
                    prop_at(name),
                    format!("`{name}` is no longer required"),
                );
            }
            if !closed(&old_extra) && closed(&new_extra) {
                self.push(
                    INPUT_ADDITIONAL_PROPERTIES_CLOSED,
                    format!("{pointer}/additionalProperties"),
                    "undeclared fields are now refused",
                );
            } else if !closed(&new_extra) {
                self.compare(
                    &old_extra,
                    &new_extra,
                    format!("{pointer}/additionalProperties"),
                );
            }
            for (name, old_schema) in &old_props {
                match new_props.get(name) {
                    Some(new_schema) => self.compare(old_schema, new_schema, prop_at(name)),
                    None if closed(&new_extra) => self.push(
                        INPUT_FIELD_REMOVED,
                        prop_at(name),
                        format!("`{name}` was removed and the object is closed: callers sending it are refused"),
                    ),
                    None => self.push(
                        INPUT_FIELD_UNDECLARED,
                        prop_at(name),
                        format!("`{name}` is no longer declared: it is accepted but may be ignored"),
                    ),
                }
            }
            for name in new_props
                .keys()
                .filter(|n| !old_props.contains_key(*n) && !new_req.contains(*n))
            {
                self.push(
                    INPUT_FIELD_ADDED,
                    prop_at(name),
                    format!("a new optional field `{name}`"),
                );
            }
        } else {
            for (name, old_schema) in &old_props {
                match new_props.get(name) {
                    Some(new_schema) => {
                        if old_req.contains(name) && !new_req.contains(name) {
                            self.push(
                                OUTPUT_FIELD_OPTIONAL,
                                prop_at(name),
                                format!("`{name}` is no longer always present"),
                            );
                        }
                        self.compare(old_schema, new_schema, prop_at(name));
                    }
                    None if old_req.contains(name) => self.push(
                        OUTPUT_FIELD_REMOVED,
                        prop_at(name),
                        format!("`{name}` was removed: callers reading it find nothing"),
                    ),
                    None => self.push(
                        OUTPUT_OPTIONAL_FIELD_REMOVED,
                        prop_at(name),
                        format!("the optional `{name}` was removed"),
                    ),
                }
            }
            for name in new_props.keys().filter(|n| !old_props.contains_key(*n)) {
                if closed(&old_extra) {
                    self.push(
                        OUTPUT_FIELD_ADDED_TO_CLOSED,
                        prop_at(name),
                        format!("a new field `{name}` in an object declared closed: clients that refuse unknown fields fail"),
                    );
                } else {
                    self.push(
                        OUTPUT_FIELD_ADDED,
                        prop_at(name),
                        format!("a new field `{name}`"),
                    );
                }
            }
            if closed(&old_extra) && !closed(&new_extra) {
                self.push(
                    OUTPUT_ADDITIONAL_PROPERTIES_OPENED,
                    format!("{pointer}/additionalProperties"),
                    "the object may now carry undeclared fields",
                );
            } else if !closed(&old_extra) {
                self.compare(
                    &old_extra,
                    &new_extra,
                    format!("{pointer}/additionalProperties"),
                );
            }
        }
    }

    fn arrays(&mut self, old: &Map<String, Value>, new: &Map<String, Value>, pointer: &str) {
        let any = Value::Bool(true);
        if old.contains_key("items") || new.contains_key("items") {
            self.compare(
                old.get("items").unwrap_or(&any),
                new.get("items").unwrap_or(&any),
                format!("{pointer}/items"),
            );
        }
        match (old.get("prefixItems"), new.get("prefixItems")) {
            (Some(Value::Array(o)), Some(Value::Array(n))) if o.len() == n.len() => {
                for (i, (o, n)) in o.iter().zip(n).enumerate() {
                    self.compare(o, n, format!("{pointer}/prefixItems/{i}"));
                }
            }
            (o, n) if o != n => self.push(
                SCHEMA_UNDECIDED,
                format!("{pointer}/prefixItems"),
                "the tuple's positions changed, and the checker does not reason about that",
            ),
            _ => {}
        }
    }
}

/// `schema` with its `$ref` (to `#/$defs/<name>` of `root`) replaced by the target, keeping
/// the keywords next to it; and the reference followed (`!ref` when it does not resolve).
fn resolve(root: &Value, schema: &Value) -> (Value, Option<String>) {
    let mut current = schema.clone();
    let mut followed = None;
    for _ in 0..32 {
        let Some(reference) = current
            .get("$ref")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return (current, followed);
        };
        let target = reference
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name));
        let Some(target) = target else {
            return (current, Some(format!("!{reference}")));
        };
        let mut merged = as_object(target);
        if let Value::Object(siblings) = &current {
            for (key, value) in siblings {
                if key != "$ref" {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        followed = Some(reference);
        current = Value::Object(merged);
    }
    (current, followed)
}

/// Whether `schema` holds a `$ref` anywhere.
fn has_ref(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.contains_key("$ref") || map.values().any(has_ref),
        Value::Array(items) => items.iter().any(has_ref),
        _ => false,
    }
}

/// A schema as keywords: `true` is `{}`, `false` is `{"not": {}}`.
fn as_object(schema: &Value) -> Map<String, Value> {
    match schema {
        Value::Object(map) => map.clone(),
        Value::Bool(false) => {
            let mut map = Map::new();
            map.insert("not".into(), Value::Object(Map::new()));
            map
        }
        _ => Map::new(),
    }
}

/// Whether the schema accepts nothing (`false`, `{"not": {}}`).
fn is_nothing(schema: &Map<String, Value>) -> bool {
    matches!(schema.get("not"), Some(Value::Object(m)) if m.is_empty())
        || matches!(schema.get("not"), Some(Value::Bool(true)))
}

fn union_of(schema: &Map<String, Value>) -> Option<(&'static str, Vec<Value>)> {
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(variants)) = schema.get(key) {
            return Some((
                if key == "anyOf" { "anyOf" } else { "oneOf" },
                variants.clone(),
            ));
        }
    }
    None
}

fn without_unions(schema: &Map<String, Value>) -> Map<String, Value> {
    let mut schema = schema.clone();
    schema.remove("anyOf");
    schema.remove("oneOf");
    schema
}

/// An alternative with the keywords that stand next to the union (they apply to it too).
fn merged(base: &Map<String, Value>, variant: Value) -> Value {
    let mut merged = without_unions(base);
    ANNOTATIONS.iter().for_each(|k| {
        merged.remove(*k);
    });
    match variant {
        Value::Object(v) => {
            for (key, value) in v {
                merged.insert(key, value);
            }
            Value::Object(merged)
        }
        other if merged.is_empty() => other,
        Value::Bool(false) => Value::Bool(false),
        _ => Value::Object(merged),
    }
}

fn types_of(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match schema.get("type")? {
        Value::String(t) => Some([t.clone()].into()),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// Whether a schema of `types` accepts every value of type `t` (`number` takes `integer`).
fn accepts(types: &BTreeSet<String>, t: &str) -> bool {
    types.contains(t) || (t == "integer" && types.contains("number"))
}

fn enum_of(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.clone());
    }
    schema.get("const").map(|c| vec![c.clone()])
}

fn properties(schema: &Map<String, Value>) -> BTreeMap<String, Value> {
    match schema.get("properties") {
        Some(Value::Object(props)) => props.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => BTreeMap::new(),
    }
}

fn required(schema: &Map<String, Value>) -> BTreeSet<String> {
    match schema.get("required") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    }
}
