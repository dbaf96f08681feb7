//! The compatibility checker against a corpus of before/after pairs: each asserts the exact
//! rule ids it produces (sorted), and some must produce none.

use alknet_spec::compat::{self, Severity, Surface};
use alknet_spec::{AccessControl, ErrorSpec, OpType, OperationSpec, SpecBundle, Visibility};
use serde_json::{Value, json};

fn op(name: &str, kind: OpType) -> OperationSpec {
    OperationSpec::new(name, kind).unwrap()
}

/// A mutation with an object input (a required `account`, an optional `memo`) and an object
/// output (a required `balance`, an optional `note`), one declared error, scope `teller`.
fn base() -> OperationSpec {
    op("bank/deposit", OpType::Mutation)
        .with_description("Adds money.")
        .with_input_schema(json!({
            "type": "object",
            "properties": {
                "account": {"type": "string"},
                "amount": {"type": "integer", "minimum": 1, "maximum": 1000},
                "memo": {"type": "string"},
                "currency": {"enum": ["EUR", "USD"]}
            },
            "required": ["account", "amount"],
            "additionalProperties": false
        }))
        .with_output_schema(json!({
            "type": "object",
            "properties": {
                "balance": {"type": "integer"},
                "note": {"type": "string"},
                "status": {"enum": ["open", "frozen"]}
            },
            "required": ["balance", "status"]
        }))
        .with_error(ErrorSpec::new("OVER_LIMIT", "Too much.").with_http_status(422))
        .with_access(AccessControl {
            required_scopes: vec!["teller".into()],
            ..AccessControl::default()
        })
}

fn bundle(ops: Vec<OperationSpec>) -> SpecBundle {
    SpecBundle::new(ops).unwrap()
}

/// The sorted rule ids of base → `change(base)`.
fn rules_after(change: impl FnOnce(&mut OperationSpec)) -> Vec<&'static str> {
    let old = base();
    let mut new = base();
    change(&mut new);
    let mut ids = compat::diff(&bundle(vec![old]), &bundle(vec![new])).rule_ids();
    ids.sort();
    ids
}

/// Sets the value at `pointer`, adding the last key when it is new.
fn set(schema: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    schema
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent}"))
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
}

fn remove(schema: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    schema
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
}

macro_rules! pair {
    ($name:ident, |$spec:ident| $change:block, [$($rule:literal),* $(,)?]) => {
        #[test]
        fn $name() {
            let mut expected: Vec<&str> = vec![$($rule),*];
            expected.sort();
            assert_eq!(rules_after(|$spec: &mut OperationSpec| $change), expected);
        }
    };
}

// --- no change, or changes that are not contract changes -------------------------------------

pair!(identical_specs_produce_nothing, |_s| {}, []);
pair!(
    reordered_properties_and_required_produce_nothing,
    |s| {
        s.input_schema = json!({
            "additionalProperties": false,
            "required": ["amount", "account"],
            "properties": {
                "currency": {"enum": ["EUR", "USD"]},
                "memo": {"type": "string"},
                "amount": {"maximum": 1000, "minimum": 1, "type": "integer"},
                "account": {"type": "string"}
            },
            "type": "object"
        });
    },
    []
);
pair!(
    annotations_are_not_contract_changes,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/memo",
            json!({"type": "string", "description": "A note.", "title": "Memo", "examples": ["rent"]}),
        );
    },
    []
);
pair!(
    a_ref_to_an_identical_def_produces_nothing,
    |s| {
        s.input_schema =
            json!({"$ref": "#/$defs/Deposit", "$defs": {"Deposit": base().input_schema}});
    },
    []
);

// --- operations ----------------------------------------------------------------------------

#[test]
fn removing_an_operation_is_breaking_on_every_surface() {
    let report = compat::diff(&bundle(vec![base()]), &bundle(vec![]));
    assert_eq!(report.rule_ids(), ["OPERATION_REMOVED"]);
    let change = &report.changes[0];
    assert_eq!(change.severity, Severity::Breaking);
    assert_eq!(
        change.surfaces,
        [Surface::Call, Surface::Openapi, Surface::Mcp]
    );
    assert!(report.has_breaking(&[]));
    assert!(!report.has_breaking(&["OPERATION_REMOVED".to_owned()]));
}

#[test]
fn removing_a_deprecated_operation_is_a_warning() {
    let old = base().deprecated();
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![]));
    assert_eq!(report.rule_ids(), ["OPERATION_REMOVED_AFTER_DEPRECATION"]);
    assert!(!report.has_breaking(&[]));
}

#[test]
fn a_rename_is_one_change_not_a_removal_and_an_addition() {
    let mut renamed = base();
    renamed.name = "bank/pay_in".into();
    let report = compat::diff(&bundle(vec![base()]), &bundle(vec![renamed]));
    assert_eq!(report.rule_ids(), ["OPERATION_RENAMED"]);
    assert!(report.changes[0].message.contains("bank/pay_in"));
}

#[test]
fn adding_an_operation_is_info() {
    let report = compat::diff(
        &bundle(vec![base()]),
        &bundle(vec![base(), op("bank/ping", OpType::Query)]),
    );
    assert_eq!(report.rule_ids(), ["OPERATION_ADDED"]);
    assert_eq!(report.changes[0].severity, Severity::Info);
}

pair!(
    changing_the_kind_is_breaking,
    |s| {
        s.op_type = OpType::Query;
    },
    ["OPERATION_KIND_CHANGED"]
);
pair!(
    making_an_operation_internal_is_breaking,
    |s| {
        s.visibility = Visibility::Internal;
    },
    ["OPERATION_MADE_INTERNAL"]
);
pair!(
    deprecating_is_info,
    |s| {
        s.deprecated = true;
    },
    ["OPERATION_DEPRECATED"]
);
pair!(
    a_new_description_is_info,
    |s| {
        s.description = "Adds money to an account.".into();
    },
    ["DESCRIPTION_CHANGED"]
);

#[test]
fn internal_operations_are_not_a_callers_contract() {
    let old = base().with_visibility(Visibility::Internal);
    let mut new = old.clone();
    new.input_schema = json!({"type": "string"});
    let report = compat::diff(&bundle(vec![old.clone()]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["INTERNAL_OPERATION_CHANGED"]);
    assert!(report.changes[0].surfaces.is_empty());
    let removed = compat::diff(&bundle(vec![old]), &bundle(vec![]));
    assert_eq!(removed.rule_ids(), ["INTERNAL_OPERATION_REMOVED"]);
}

#[test]
fn subscriptions_are_not_mcp_tools() {
    let old = op("feed/ticks", OpType::Subscription).with_output_schema(
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
    );
    let mut new = old.clone();
    new.output_schema = json!({"type": "object", "properties": {}});
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["OUTPUT_FIELD_REMOVED"]);
    assert_eq!(
        report.changes[0].surfaces,
        [Surface::Call, Surface::Openapi]
    );
    assert_eq!(report.changes[0].pointer, "/output_schema/properties/n");
}

// --- access ----------------------------------------------------------------------------------

pair!(
    a_new_required_scope_is_breaking,
    |s| {
        s.access_control.required_scopes.push("audited".into());
    },
    ["SCOPE_REQUIRED"]
);
pair!(
    dropping_a_scope_is_info,
    |s| {
        s.access_control.required_scopes.clear();
    },
    ["ACCESS_RELAXED"]
);
pair!(
    a_new_any_of_scopes_is_breaking,
    |s| {
        s.access_control.required_scopes_any = Some(vec!["eu".into(), "us".into()]);
    },
    ["SCOPE_ANY_NARROWED"]
);
pair!(
    a_new_resource_rule_is_breaking,
    |s| {
        s.access_control.resource_type = Some("account".into());
        s.access_control.resource_action = Some("deposit".into());
        s.resource_id_path = Some("/account".into());
    },
    ["RESOURCE_ID_MOVED", "RESOURCE_RULE_ADDED"]
);

// --- errors ----------------------------------------------------------------------------------

pair!(
    removing_a_declared_error_is_breaking,
    |s| {
        s.error_schemas.clear();
    },
    ["ERROR_REMOVED"]
);
pair!(
    adding_a_declared_error_is_a_warning,
    |s| {
        s.error_schemas.push(ErrorSpec::new("FROZEN", "Frozen."));
    },
    ["ERROR_ADDED"]
);

#[test]
fn an_error_status_change_breaks_openapi_only() {
    let mut new = base();
    new.error_schemas[0].http_status = Some(409);
    let report = compat::diff(&bundle(vec![base()]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["ERROR_STATUS_CHANGED"]);
    assert_eq!(report.changes[0].surfaces, [Surface::Openapi]);
    assert_eq!(report.changes[0].pointer, "/error_schemas/0/http_status");
}

#[test]
fn error_details_are_checked_as_output() {
    let details = |limit: Value| json!({"type": "object", "properties": {"limit": limit}, "required": ["limit"]});
    let mut old = base();
    old.error_schemas[0].schema = Some(details(json!({"type": "integer"})));
    let mut new = base();
    new.error_schemas[0].schema = Some(details(json!({"type": ["integer", "null"]})));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["OUTPUT_TYPE_WIDENED"]);
    assert_eq!(
        report.changes[0].pointer,
        "/error_schemas/0/schema/properties/limit/type"
    );
}

// --- inputs ----------------------------------------------------------------------------------

pair!(
    a_new_required_input_field_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/required",
            json!(["account", "amount", "memo"]),
        );
    },
    ["INPUT_REQUIRED_ADDED"]
);
pair!(
    a_new_optional_input_field_is_info,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/reference",
            json!({"type": "string"}),
        );
    },
    ["INPUT_FIELD_ADDED"]
);
pair!(
    a_required_field_made_optional_is_info,
    |s| {
        set(&mut s.input_schema, "/required", json!(["account"]));
    },
    ["INPUT_REQUIRED_REMOVED"]
);
pair!(
    removing_a_field_of_a_closed_input_is_breaking,
    |s| {
        remove(&mut s.input_schema, "/properties/memo");
    },
    ["INPUT_FIELD_REMOVED"]
);
pair!(
    removing_a_field_of_an_open_input_is_a_warning,
    |s| {
        remove(&mut s.input_schema, "/properties/memo");
        remove(&mut s.input_schema, "/additionalProperties");
    },
    ["INPUT_FIELD_UNDECLARED", "INPUT_WIDENED"]
);
pair!(
    an_input_type_narrowed_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/account",
            json!({"type": "integer"}),
        );
    },
    ["INPUT_TYPE_NARROWED"]
);
pair!(
    an_input_type_widened_is_info,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/account",
            json!({"type": ["string", "null"]}),
        );
    },
    ["INPUT_WIDENED"]
);
pair!(
    integer_to_number_widens_an_input,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/amount/type",
            json!("number"),
        );
    },
    ["INPUT_WIDENED"]
);
pair!(
    a_string_input_made_a_number_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/memo",
            json!({"type": "number"}),
        );
    },
    ["INPUT_TYPE_NARROWED"]
);
pair!(
    an_input_enum_losing_a_value_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/currency",
            json!({"enum": ["EUR"]}),
        );
    },
    ["INPUT_ENUM_NARROWED"]
);
pair!(
    an_input_enum_gaining_a_value_is_compatible,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/currency",
            json!({"enum": ["EUR", "USD", "GBP"]}),
        );
    },
    []
);
pair!(
    an_enum_imposed_on_an_input_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/memo",
            json!({"type": "string", "enum": ["rent", "salary"]}),
        );
    },
    ["INPUT_ENUM_NARROWED"]
);
pair!(
    a_format_added_to_an_input_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/account",
            json!({"type": "string", "format": "uuid"}),
        );
    },
    ["INPUT_FORMAT_NARROWED"]
);
pair!(
    a_stricter_input_maximum_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/amount/maximum",
            json!(500),
        );
    },
    ["INPUT_RANGE_NARROWED"]
);
pair!(
    a_looser_input_maximum_is_info,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/amount/maximum",
            json!(5000),
        );
    },
    ["INPUT_WIDENED"]
);
pair!(
    a_new_input_pattern_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/account",
            json!({"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"}),
        );
    },
    ["INPUT_RANGE_NARROWED"]
);
pair!(
    a_new_input_max_length_is_breaking,
    |s| {
        set(
            &mut s.input_schema,
            "/properties/memo",
            json!({"type": "string", "maxLength": 140}),
        );
    },
    ["INPUT_RANGE_NARROWED"]
);
#[test]
fn closing_additional_properties_alone_is_one_rule() {
    let old = op("t/x", OpType::Query)
        .with_input_schema(json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    let mut new = old.clone();
    new.input_schema["additionalProperties"] = json!(false);
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["INPUT_ADDITIONAL_PROPERTIES_CLOSED"]);
    assert_eq!(
        report.changes[0].pointer,
        "/input_schema/additionalProperties"
    );
}

pair!(
    an_optional_field_with_a_ref_type_is_info,
    |s| {
        s.input_schema = json!({
            "type": "object",
            "properties": {
                "account": {"type": "string"},
                "amount": {"type": "integer", "minimum": 1, "maximum": 1000},
                "memo": {"type": "string"},
                "currency": {"enum": ["EUR", "USD"]},
                "payer": {"$ref": "#/$defs/Person"}
            },
            "required": ["account", "amount"],
            "additionalProperties": false,
            "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}
        });
    },
    ["INPUT_FIELD_ADDED"]
);

#[test]
fn a_required_field_deep_in_a_def_is_breaking_with_its_pointer() {
    let schema = |required: Value| {
        json!({
            "type": "object",
            "properties": {"payer": {"$ref": "#/$defs/Person"}},
            "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}, "iban": {"type": "string"}}, "required": required}}
        })
    };
    let old = op("t/x", OpType::Mutation).with_input_schema(schema(json!(["name"])));
    let new = op("t/x", OpType::Mutation).with_input_schema(schema(json!(["name", "iban"])));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["INPUT_REQUIRED_ADDED"]);
    assert_eq!(
        report.changes[0].pointer,
        "/input_schema/properties/payer/properties/iban"
    );
}

#[test]
fn recursive_defs_terminate() {
    let tree = |leaf: Value| {
        json!({
            "$ref": "#/$defs/Node",
            "$defs": {"Node": {"type": "object", "properties": {"value": leaf, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}
        })
    };
    let old = op("t/tree", OpType::Query).with_input_schema(tree(json!({"type": "string"})));
    let new = op("t/tree", OpType::Query).with_input_schema(tree(json!({"type": "integer"})));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["INPUT_TYPE_NARROWED"]);
}

#[test]
fn array_items_are_compared() {
    let old = op("t/x", OpType::Query)
        .with_input_schema(json!({"type": "array", "items": {"type": ["string", "integer"]}}));
    let new = op("t/x", OpType::Query)
        .with_input_schema(json!({"type": "array", "items": {"type": "string"}}));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["INPUT_TYPE_NARROWED"]);
    assert_eq!(report.changes[0].pointer, "/input_schema/items/type");
}

#[test]
fn a_removed_input_alternative_is_breaking() {
    let old = op("t/x", OpType::Query).with_input_schema(
        json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]}),
    );
    let new = op("t/x", OpType::Query)
        .with_input_schema(json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}));
    let report = compat::diff(&bundle(vec![old.clone()]), &bundle(vec![new.clone()]));
    assert_eq!(report.rule_ids(), ["INPUT_VARIANT_REMOVED"]);
    assert_eq!(report.changes[0].pointer, "/input_schema/oneOf/2");
    // The other way round an input alternative was added: compatible.
    let report = compat::diff(&bundle(vec![new]), &bundle(vec![old]));
    assert!(!report.has_breaking(&[]), "{report:?}");
}

#[test]
fn alternatives_are_matched_whatever_their_order() {
    let old = op("t/x", OpType::Query)
        .with_input_schema(json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}));
    let new = op("t/x", OpType::Query)
        .with_input_schema(json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}));
    assert_eq!(
        compat::diff(&bundle(vec![old]), &bundle(vec![new])).rule_ids(),
        Vec::<&str>::new()
    );
}

#[test]
fn a_nullable_input_made_non_null_is_breaking() {
    let old = op("t/x", OpType::Query).with_input_schema(json!({"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}], "$defs": {"A": {"type": "string"}}}));
    let new = op("t/x", OpType::Query)
        .with_input_schema(json!({"$ref": "#/$defs/A", "$defs": {"A": {"type": "string"}}}));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["INPUT_VARIANT_REMOVED"]);
}

// --- outputs ---------------------------------------------------------------------------------

pair!(
    removing_a_required_output_field_is_breaking,
    |s| {
        remove(&mut s.output_schema, "/properties/balance");
        set(&mut s.output_schema, "/required", json!(["status"]));
    },
    ["OUTPUT_FIELD_REMOVED"]
);
pair!(
    removing_an_optional_output_field_is_a_warning,
    |s| {
        remove(&mut s.output_schema, "/properties/note");
    },
    ["OUTPUT_OPTIONAL_FIELD_REMOVED"]
);
pair!(
    an_output_field_made_optional_is_breaking,
    |s| {
        set(&mut s.output_schema, "/required", json!(["status"]));
    },
    ["OUTPUT_FIELD_OPTIONAL"]
);
pair!(
    an_output_field_added_to_an_open_object_is_info,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/currency",
            json!({"type": "string"}),
        );
    },
    ["OUTPUT_FIELD_ADDED"]
);
#[test]
fn an_output_field_added_to_a_closed_object_is_breaking() {
    let closed = |props: Value| json!({"type": "object", "properties": props, "additionalProperties": false});
    let old = op("t/x", OpType::Query).with_output_schema(closed(json!({"a": {"type": "string"}})));
    let new = op("t/x", OpType::Query).with_output_schema(closed(
        json!({"a": {"type": "string"}, "b": {"type": "string"}}),
    ));
    let report = compat::diff(&bundle(vec![old.clone()]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["OUTPUT_FIELD_ADDED_TO_CLOSED"]);
    // Opening it is breaking for the same reason.
    let mut opened = old.clone();
    opened.output_schema["additionalProperties"] = json!(true);
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![opened]));
    assert_eq!(report.rule_ids(), ["OUTPUT_ADDITIONAL_PROPERTIES_OPENED"]);
}
pair!(
    an_output_enum_widened_is_breaking,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/status",
            json!({"enum": ["open", "frozen", "closed"]}),
        );
    },
    ["OUTPUT_ENUM_WIDENED"]
);
pair!(
    an_output_enum_narrowed_is_compatible,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/status",
            json!({"enum": ["open"]}),
        );
    },
    []
);
pair!(
    an_output_made_nullable_is_breaking,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/balance",
            json!({"type": ["integer", "null"]}),
        );
    },
    ["OUTPUT_TYPE_WIDENED"]
);
pair!(
    an_output_integer_made_number_is_breaking,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/balance",
            json!({"type": "number"}),
        );
    },
    ["OUTPUT_TYPE_WIDENED"]
);
#[test]
fn an_output_number_made_integer_is_compatible() {
    let old = op("t/x", OpType::Query).with_output_schema(json!({"type": "number"}));
    let new = op("t/x", OpType::Query).with_output_schema(json!({"type": "integer"}));
    assert!(
        compat::diff(&bundle(vec![old]), &bundle(vec![new]))
            .rule_ids()
            .is_empty()
    );
}
pair!(
    a_format_added_to_an_output_is_compatible,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/note",
            json!({"type": "string", "format": "date-time"}),
        );
    },
    []
);
pair!(
    a_bound_added_to_an_output_is_info,
    |s| {
        set(
            &mut s.output_schema,
            "/properties/balance",
            json!({"type": "integer", "minimum": -100}),
        );
    },
    ["OUTPUT_NARROWED"]
);

#[test]
fn an_output_format_change_and_a_looser_bound_are_warnings() {
    let old = op("t/x", OpType::Query)
        .with_output_schema(json!({"type": "string", "format": "date-time", "maxLength": 30}));
    let new =
        op("t/x", OpType::Query).with_output_schema(json!({"type": "string", "maxLength": 40}));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    let mut ids = report.rule_ids();
    ids.sort();
    assert_eq!(ids, ["OUTPUT_FORMAT_CHANGED", "OUTPUT_RANGE_WIDENED"]);
    assert!(!report.has_breaking(&[]));
}

#[test]
fn a_new_output_alternative_is_breaking() {
    let old = op("t/x", OpType::Query).with_output_schema(json!({"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]}]}));
    let new = op("t/x", OpType::Query).with_output_schema(json!({"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}}, "required": ["kind"]},
        {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]}
    ]}));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["OUTPUT_VARIANT_ADDED"]);
    assert_eq!(report.changes[0].pointer, "/output_schema/oneOf/1");
}

#[test]
fn an_output_that_was_any_and_now_typed_is_compatible() {
    let old = op("t/x", OpType::Query);
    let new = op("t/x", OpType::Query).with_output_schema(json!({"type": "string"}));
    assert!(
        compat::diff(&bundle(vec![old.clone()]), &bundle(vec![new.clone()]))
            .rule_ids()
            .is_empty()
    );
    // The other way round: an output that may now be anything.
    let report = compat::diff(&bundle(vec![new]), &bundle(vec![old]));
    assert_eq!(report.rule_ids(), ["OUTPUT_TYPE_WIDENED"]);
}

// --- what the checker cannot judge ---------------------------------------------------------

#[test]
fn keywords_it_cannot_reason_about_are_warnings_with_their_pointer() {
    let old = op("t/x", OpType::Query)
        .with_input_schema(json!({"type": "object", "allOf": [{"required": ["a"]}]}));
    let new = op("t/x", OpType::Query)
        .with_input_schema(json!({"type": "object", "allOf": [{"required": ["a", "b"]}]}));
    let report = compat::diff(&bundle(vec![old]), &bundle(vec![new]));
    assert_eq!(report.rule_ids(), ["SCHEMA_UNDECIDED"]);
    assert_eq!(report.changes[0].pointer, "/input_schema/allOf");
    assert_eq!(report.changes[0].severity, Severity::Warning);
}

#[test]
fn an_unresolvable_ref_is_undecided() {
    let old = op("t/x", OpType::Query)
        .with_input_schema(json!({"$ref": "https://example.invalid/a.json"}));
    let new = op("t/x", OpType::Query)
        .with_input_schema(json!({"$ref": "https://example.invalid/b.json"}));
    assert_eq!(
        compat::diff(&bundle(vec![old]), &bundle(vec![new])).rule_ids(),
        ["SCHEMA_UNDECIDED"]
    );
}

// --- reports -------------------------------------------------------------------------------

#[test]
fn reports_render_as_text_markdown_and_json() {
    let mut new = base();
    new.access_control.required_scopes.push("audited".into());
    new.deprecated = true;
    let report = compat::diff(&bundle(vec![base()]), &bundle(vec![new]));
    let text = report.to_text();
    assert!(
        text.contains("breaking SCOPE_REQUIRED bank/deposit#/access_control/required_scopes"),
        "{text}"
    );
    assert!(
        text.ends_with("1 breaking, 0 warning(s), 1 info\n"),
        "{text}"
    );
    let markdown = report.to_markdown();
    assert!(markdown.starts_with("| severity | rule |"), "{markdown}");
    assert!(
        markdown.contains("| breaking | `SCOPE_REQUIRED` | `bank/deposit` |"),
        "{markdown}"
    );
    let json = report.to_json();
    assert_eq!(
        json["summary"],
        json!({"breaking": 1, "warning": 0, "info": 1})
    );
    assert_eq!(
        json["changes"][0]["surfaces"],
        json!(["call", "openapi", "mcp"])
    );
}

#[test]
fn every_rule_has_a_unique_id_and_is_documented() {
    let doc = include_str!("../../docs/compatibility.md");
    let mut seen = std::collections::HashSet::new();
    for rule in compat::RULES {
        assert!(seen.insert(rule.id), "duplicate {}", rule.id);
        assert!(
            doc.contains(&format!("`{}`", rule.id)),
            "{} is not in docs/compatibility.md",
            rule.id
        );
    }
}

#[test]
fn resumability_added_is_info_and_withdrawn_is_breaking() {
    let stream = |resumable: bool| {
        let spec = op("feed/ticks", OpType::Subscription);
        bundle(vec![if resumable { spec.resumable() } else { spec }])
    };
    let added = compat::diff(&stream(false), &stream(true));
    assert_eq!(added.rule_ids(), ["RESUMABLE_ADDED"]);
    assert_eq!(added.changes[0].severity, Severity::Info);
    let withdrawn = compat::diff(&stream(true), &stream(false));
    assert_eq!(withdrawn.rule_ids(), ["RESUMABLE_WITHDRAWN"]);
    assert_eq!(withdrawn.changes[0].severity, Severity::Breaking);
}
