//! The rules: one stable id each, with its severity and what it means. `docs/compatibility.md`
//! shows each with a before/after example; ids never change meaning, and new ones are added.

use super::{Severity, Surface};

/// A compatibility rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The stable id, `UPPER_SNAKE_CASE`.
    pub id: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// The one surface it concerns, when it concerns only one (an HTTP status: OpenAPI).
    pub only_on: Option<Surface>,
    /// What it means.
    pub summary: &'static str,
}

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

macro_rules! rules {
    ($($name:ident = $severity:ident $(on $surface:ident)?, $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: &str = stringify!($name);
        )*
        /// Every rule, in the order `docs/compatibility.md` lists them.
        pub const RULES: &[Rule] = &[
            $(Rule {
                id: stringify!($name),
                severity: Severity::$severity,
                only_on: rules!(@surface $($surface)?),
                summary: $summary,
            },)*
        ];
    };
    (@surface) => { None };
    (@surface $surface:ident) => { Some(Surface::$surface) };
}

rules! {
    OPERATION_REMOVED = Breaking, "An external operation was removed without being deprecated first.";
    OPERATION_REMOVED_AFTER_DEPRECATION = Warning, "A deprecated external operation was removed.";
    OPERATION_RENAMED = Breaking, "An operation was removed and one with the same kind and schemas added under another name.";
    OPERATION_ADDED = Info, "A new operation.";
    OPERATION_KIND_CHANGED = Breaking, "The operation's kind (query, mutation, subscription) changed.";
    OPERATION_MADE_INTERNAL = Breaking, "An external operation became internal: outside callers get NOT_FOUND.";
    OPERATION_MADE_EXTERNAL = Info, "An internal operation became external.";
    OPERATION_DEPRECATED = Info, "The operation was marked deprecated.";
    DEPRECATION_WITHDRAWN = Info, "The operation is no longer deprecated.";
    RESUMABLE_ADDED = Info, "The subscription became resumable.";
    RESUMABLE_WITHDRAWN = Breaking, "The subscription is no longer resumable: callers that resume get INVALID_INPUT.";
    DESCRIPTION_CHANGED = Info, "The description changed.";
    INTERNAL_OPERATION_CHANGED = Info, "An internal operation changed: only compositions of the same node reach it.";
    INTERNAL_OPERATION_REMOVED = Info, "An internal operation was removed.";
    SCOPE_REQUIRED = Breaking, "A scope was added to `required_scopes`.";
    SCOPE_ANY_NARROWED = Breaking, "`required_scopes_any` appeared or lost a scope.";
    RESOURCE_RULE_ADDED = Breaking, "A resource rule (type and action) was added or changed.";
    RESOURCE_ID_MOVED = Breaking, "The resource id is read from another place in the input.";
    ACCESS_RELAXED = Info, "A scope or resource rule was removed.";
    ERROR_REMOVED = Breaking, "A declared error was removed.";
    ERROR_STATUS_CHANGED = Breaking on Openapi, "A declared error's HTTP status changed.";
    ERROR_ADDED = Warning, "A declared error was added.";
    INPUT_REQUIRED_ADDED = Breaking, "An input field became required.";
    INPUT_REQUIRED_REMOVED = Info, "An input field is no longer required.";
    INPUT_FIELD_REMOVED = Breaking, "An input field was removed from a closed object: callers sending it are refused.";
    INPUT_FIELD_UNDECLARED = Warning, "An input field is no longer declared (the object stays open: it is accepted and may be ignored).";
    INPUT_FIELD_ADDED = Info, "An optional input field was added.";
    INPUT_TYPE_NARROWED = Breaking, "An input accepts fewer types (or no value at all).";
    INPUT_ENUM_NARROWED = Breaking, "An input enum lost values, or an enum was imposed.";
    INPUT_FORMAT_NARROWED = Breaking, "An input `format` was added or changed.";
    INPUT_RANGE_NARROWED = Breaking, "An input bound became stricter: minimum, maximum, length, items, pattern, multipleOf, uniqueItems.";
    INPUT_ADDITIONAL_PROPERTIES_CLOSED = Breaking, "An input object no longer accepts undeclared fields.";
    INPUT_VARIANT_REMOVED = Breaking, "An `anyOf`/`oneOf` input alternative is no longer accepted.";
    INPUT_WIDENED = Info, "An input accepts more than before.";
    OUTPUT_FIELD_REMOVED = Breaking, "A required output field was removed.";
    OUTPUT_OPTIONAL_FIELD_REMOVED = Warning, "An optional output field was removed.";
    OUTPUT_FIELD_OPTIONAL = Breaking, "A required output field became optional.";
    OUTPUT_FIELD_ADDED = Info, "An output field was added to an open object.";
    OUTPUT_FIELD_ADDED_TO_CLOSED = Breaking, "An output field was added to an object declared closed: clients generated from it refuse unknown fields.";
    OUTPUT_ADDITIONAL_PROPERTIES_OPENED = Breaking, "An output object that was closed may now carry undeclared fields.";
    OUTPUT_TYPE_WIDENED = Breaking, "An output may have types it could not have before (null included).";
    OUTPUT_ENUM_WIDENED = Breaking, "An output enum gained values, or lost its enum.";
    OUTPUT_FORMAT_CHANGED = Warning, "An output `format` was removed or changed.";
    OUTPUT_RANGE_WIDENED = Warning, "An output bound became looser.";
    OUTPUT_VARIANT_ADDED = Breaking, "An output may match an `anyOf`/`oneOf` alternative old callers do not know.";
    OUTPUT_NARROWED = Info, "An output promises more than before.";
    SCHEMA_UNDECIDED = Warning, "A schema keyword the checker cannot reason about changed: review it by hand.";
}
