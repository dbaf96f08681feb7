//! Compatibility between two versions of a contract: which changes break callers, on which
//! surface (design §14).
//!
//! [`diff`] compares two spec bundles operation by operation and classifies every change with a
//! stable [`Rule`] id, a [`Severity`], the JSON pointer inside the operation's spec, and the
//! surfaces it affects: the call protocol, the OpenAPI document, the MCP tools. All three are
//! projections of the same IR, so one comparison answers for all of them.
//!
//! The schema reasoning (`schema`) is directional: an input may accept more than before, never
//! less; an output may promise more than before, never less. It understands what the IR's
//! schemas use — `$ref` into `$defs`, `anyOf`/`oneOf`, type arrays (nullable), nested objects
//! and arrays, enums, formats and ranges — and reports anything else that changed as
//! [`SCHEMA_UNDECIDED`](rules::SCHEMA_UNDECIDED), a warning with its pointer: it never passes a
//! change it cannot judge.

pub mod rules;
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{OpType, OperationSpec, SpecBundle, Visibility};

pub use rules::{RULES, Rule, rule};

/// How much a change matters to existing callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Existing callers can fail: refused input, missing output, lost access.
    Breaking,
    /// Callers may notice, or the change could not be judged: look at it.
    Warning,
    /// Compatible: new capabilities, relaxed rules, documentation.
    Info,
}

impl Severity {
    /// `breaking`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Breaking => "breaking",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Where callers meet an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// The alknet call protocol (QUIC, WebSocket), and typed Rust clients.
    Call,
    /// The HTTP gateway as the OpenAPI document describes it, and clients generated from it.
    Openapi,
    /// MCP tools (queries and mutations only).
    Mcp,
}

impl Surface {
    /// `call`, `openapi` or `mcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Call => "call",
            Surface::Openapi => "openapi",
            Surface::Mcp => "mcp",
        }
    }
}

/// One classified change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The stable rule id, e.g. `INPUT_REQUIRED_ADDED`.
    pub rule: &'static str,
    /// The rule's severity.
    pub severity: Severity,
    /// The operation (its name in the old bundle, or in the new one when it was added).
    pub operation: String,
    /// JSON Pointer into the operation's spec, e.g. `/input_schema/properties/amount`.
    pub pointer: String,
    /// What changed, in a sentence.
    pub message: String,
    /// The surfaces whose callers it affects.
    pub surfaces: Vec<Surface>,
}

/// Every change between two bundles, sorted by operation, pointer and rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The changes.
    pub changes: Vec<Change>,
}

impl Report {
    /// The breaking changes whose rule is not in `allowed`.
    pub fn breaking<'a>(&'a self, allowed: &'a [String]) -> impl Iterator<Item = &'a Change> {
        self.changes.iter().filter(move |c| {
            c.severity == Severity::Breaking && !allowed.iter().any(|a| a == c.rule)
        })
    }

    /// Whether a breaking change is left once the `allowed` rules are waived.
    pub fn has_breaking(&self, allowed: &[String]) -> bool {
        self.breaking(allowed).next().is_some()
    }

    /// How many changes of each severity.
    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut counts = BTreeMap::new();
        for change in &self.changes {
            *counts.entry(change.severity).or_insert(0) += 1;
        }
        counts
    }

    /// The rule ids, in report order (for tests and quick looks).
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.changes.iter().map(|c| c.rule).collect()
    }

    /// One line per change, then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let _ = writeln!(
                out,
                "{:<8} {} {}#{}: {} [{}]",
                c.severity.as_str(),
                c.rule,
                c.operation,
                c.pointer,
                c.message,
                surfaces_text(&c.surfaces)
            );
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    /// A Markdown table, for pull-request comments.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| severity | rule | operation | pointer | change | surfaces |\n|---|---|---|---|---|---|\n",
        );
        for c in &self.changes {
            let _ = writeln!(
                out,
                "| {} | `{}` | `{}` | `{}` | {} | {} |",
                c.severity.as_str(),
                c.rule,
                c.operation,
                if c.pointer.is_empty() {
                    "/"
                } else {
                    &c.pointer
                },
                c.message.replace('|', "\\|"),
                surfaces_text(&c.surfaces)
            );
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }

    /// `{"changes": [...], "summary": {"breaking": n, "warning": n, "info": n}}`.
    pub fn to_json(&self) -> Value {
        let counts = self.counts();
        let count = |s| counts.get(&s).copied().unwrap_or(0);
        json!({
            "changes": self.changes,
            "summary": {
                "breaking": count(Severity::Breaking),
                "warning": count(Severity::Warning),
                "info": count(Severity::Info),
            }
        })
    }

    fn summary(&self) -> String {
        let counts = self.counts();
        let count = |s| counts.get(&s).copied().unwrap_or(0);
        format!(
            "{} breaking, {} warning(s), {} info",
            count(Severity::Breaking),
            count(Severity::Warning),
            count(Severity::Info)
        )
    }
}

fn surfaces_text(surfaces: &[Surface]) -> String {
    if surfaces.is_empty() {
        return "no external surface".into();
    }
    surfaces
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A change found inside one operation, before it is given the operation and its surfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub rule: &'static str,
    pub pointer: String,
    pub message: String,
}

impl Finding {
    pub(crate) fn new(
        rule: &'static str,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// Classifies every change from `old` to `new`.
pub fn diff(old: &SpecBundle, new: &SpecBundle) -> Report {
    let old_ops: BTreeMap<&str, &OperationSpec> = old
        .operations
        .iter()
        .map(|o| (o.name.as_str(), o))
        .collect();
    let new_ops: BTreeMap<&str, &OperationSpec> = new
        .operations
        .iter()
        .map(|o| (o.name.as_str(), o))
        .collect();
    let mut changes = Vec::new();
    let mut renamed_to = BTreeSet::new();
    for (name, old_op) in &old_ops {
        match new_ops.get(name) {
            Some(new_op) => {
                for finding in diff_operation(old_op, new_op) {
                    changes.push(change(finding, old_op, Some(new_op)));
                }
            }
            None => {
                // Same kind and schemas under another name, not there before: a rename.
                let twin = new_ops.iter().find(|(new_name, new_op)| {
                    !old_ops.contains_key(*new_name)
                        && !renamed_to.contains(*new_name)
                        && new_op.op_type == old_op.op_type
                        && new_op.input_schema == old_op.input_schema
                        && new_op.output_schema == old_op.output_schema
                });
                let finding = match (twin, old_op.visibility, old_op.deprecated) {
                    (_, Visibility::Internal, _) => Finding::new(
                        rules::INTERNAL_OPERATION_REMOVED,
                        "",
                        "the internal operation was removed (only compositions could reach it)",
                    ),
                    (Some((new_name, _)), _, _) => {
                        renamed_to.insert(*new_name);
                        Finding::new(
                            rules::OPERATION_RENAMED,
                            "/name",
                            format!("renamed to `{new_name}`: callers of `{name}` get NOT_FOUND"),
                        )
                    }
                    (None, _, true) => Finding::new(
                        rules::OPERATION_REMOVED_AFTER_DEPRECATION,
                        "",
                        "the deprecated operation was removed",
                    ),
                    (None, _, false) => Finding::new(
                        rules::OPERATION_REMOVED,
                        "",
                        "the operation was removed without being deprecated first: callers get NOT_FOUND",
                    ),
                };
                changes.push(change(finding, old_op, None));
            }
        }
    }
    for (name, new_op) in &new_ops {
        if old_ops.contains_key(name) || renamed_to.contains(name) {
            continue;
        }
        let finding = Finding::new(rules::OPERATION_ADDED, "", "a new operation");
        changes.push(change(finding, new_op, Some(new_op)));
    }
    changes.sort_by(|a, b| {
        (&a.operation, &a.pointer, a.rule).cmp(&(&b.operation, &b.pointer, b.rule))
    });
    changes.dedup();
    Report { changes }
}

/// The surfaces on which callers meet `op`: none for an internal operation; the call protocol
/// and OpenAPI for an external one; MCP too unless it is a subscription (not a tool).
fn op_surfaces(op: &OperationSpec) -> Vec<Surface> {
    match (op.visibility, op.op_type) {
        (Visibility::Internal, _) => Vec::new(),
        (Visibility::External, OpType::Subscription) => vec![Surface::Call, Surface::Openapi],
        (Visibility::External, _) => vec![Surface::Call, Surface::Openapi, Surface::Mcp],
    }
}

fn change(finding: Finding, old_op: &OperationSpec, new_op: Option<&OperationSpec>) -> Change {
    let rule = rule(finding.rule).expect("every finding names a known rule");
    // Callers of the old version are who a change can break: their surfaces, plus the ones a
    // change of kind or visibility opens in the new version.
    let mut surfaces: BTreeSet<Surface> = op_surfaces(old_op).into_iter().collect();
    if let Some(new_op) = new_op {
        surfaces.extend(op_surfaces(new_op));
    }
    if let Some(only) = rule.only_on {
        surfaces.retain(|s| *s == only);
    }
    Change {
        rule: rule.id,
        severity: rule.severity,
        operation: old_op.name.clone(),
        pointer: finding.pointer,
        message: finding.message,
        surfaces: surfaces.into_iter().collect(),
    }
}

/// The changes inside one operation that exists on both sides.
fn diff_operation(old: &OperationSpec, new: &OperationSpec) -> Vec<Finding> {
    let mut findings = Vec::new();
    if old.visibility == Visibility::Internal && new.visibility == Visibility::Internal {
        // Not part of any caller's contract: only compositions of the same node reach it.
        if old != new {
            findings.push(Finding::new(
                rules::INTERNAL_OPERATION_CHANGED,
                "",
                "the internal operation changed (only compositions reach it)",
            ));
        }
        return findings;
    }
    match (old.visibility, new.visibility) {
        (Visibility::External, Visibility::Internal) => findings.push(Finding::new(
            rules::OPERATION_MADE_INTERNAL,
            "/visibility",
            "now internal: outside callers get NOT_FOUND",
        )),
        (Visibility::Internal, Visibility::External) => findings.push(Finding::new(
            rules::OPERATION_MADE_EXTERNAL,
            "/visibility",
            "now external: callers can reach it",
        )),
        _ => {}
    }
    if old.op_type != new.op_type {
        findings.push(Finding::new(
            rules::OPERATION_KIND_CHANGED,
            "/op_type",
            format!(
                "was a {}, now a {}: callers use the wrong shape",
                old.op_type.as_str(),
                new.op_type.as_str()
            ),
        ));
    }
    match (old.deprecated, new.deprecated) {
        (false, true) => findings.push(Finding::new(
            rules::OPERATION_DEPRECATED,
            "/deprecated",
            "now deprecated: it may be removed in a later version",
        )),
        (true, false) => findings.push(Finding::new(
            rules::DEPRECATION_WITHDRAWN,
            "/deprecated",
            "no longer deprecated",
        )),
        _ => {}
    }
    match (old.resumable, new.resumable) {
        (false, true) => findings.push(Finding::new(
            rules::RESUMABLE_ADDED,
            "/resumable",
            "now resumable",
        )),
        (true, false) => findings.push(Finding::new(
            rules::RESUMABLE_WITHDRAWN,
            "/resumable",
            "no longer resumable: a caller resuming after a dropped connection gets INVALID_INPUT",
        )),
        _ => {}
    }
    if old.description != new.description {
        findings.push(Finding::new(
            rules::DESCRIPTION_CHANGED,
            "/description",
            "the description changed",
        ));
    }
    diff_access(old, new, &mut findings);
    findings.extend(schema::compare(
        &old.input_schema,
        &new.input_schema,
        schema::Direction::Input,
        "/input_schema",
    ));
    let output_pointer = "/output_schema";
    findings.extend(schema::compare(
        &old.output_schema,
        &new.output_schema,
        schema::Direction::Output,
        output_pointer,
    ));
    diff_errors(old, new, &mut findings);
    findings
}

fn diff_access(old: &OperationSpec, new: &OperationSpec, findings: &mut Vec<Finding>) {
    let (o, n) = (&old.access_control, &new.access_control);
    for scope in n
        .required_scopes
        .iter()
        .filter(|s| !o.required_scopes.contains(s))
    {
        findings.push(Finding::new(
            rules::SCOPE_REQUIRED,
            "/access_control/required_scopes",
            format!("now requires the scope `{scope}`: callers without it get FORBIDDEN"),
        ));
    }
    for scope in o
        .required_scopes
        .iter()
        .filter(|s| !n.required_scopes.contains(s))
    {
        findings.push(Finding::new(
            rules::ACCESS_RELAXED,
            "/access_control/required_scopes",
            format!("no longer requires the scope `{scope}`"),
        ));
    }
    match (&o.required_scopes_any, &n.required_scopes_any) {
        (None, Some(any)) => findings.push(Finding::new(
            rules::SCOPE_ANY_NARROWED,
            "/access_control/required_scopes_any",
            format!("now requires one of {}", any.join(", ")),
        )),
        (Some(old_any), Some(new_any)) => {
            for scope in old_any.iter().filter(|s| !new_any.contains(s)) {
                findings.push(Finding::new(
                    rules::SCOPE_ANY_NARROWED,
                    "/access_control/required_scopes_any",
                    format!("the scope `{scope}` no longer suffices"),
                ));
            }
        }
        (Some(_), None) => findings.push(Finding::new(
            rules::ACCESS_RELAXED,
            "/access_control/required_scopes_any",
            "no longer requires one of a set of scopes",
        )),
        (None, None) => {}
    }
    let old_resource = (&o.resource_type, &o.resource_action);
    let new_resource = (&n.resource_type, &n.resource_action);
    if old_resource != new_resource {
        match new_resource {
            (Some(kind), action) => findings.push(Finding::new(
                rules::RESOURCE_RULE_ADDED,
                "/access_control/resource_type",
                format!(
                    "now checks `{}` on resource `{kind}`: callers who do not own it get refused",
                    action.as_deref().unwrap_or("?")
                ),
            )),
            (None, _) => findings.push(Finding::new(
                rules::ACCESS_RELAXED,
                "/access_control/resource_type",
                "no longer checks a resource rule",
            )),
        }
    }
    if old.resource_id_path != new.resource_id_path && new.access_control.resource_type.is_some() {
        findings.push(Finding::new(
            rules::RESOURCE_ID_MOVED,
            "/resource_id_path",
            format!(
                "the resource id is now read at `{}`",
                new.resource_id_path.as_deref().unwrap_or("(nowhere)")
            ),
        ));
    }
}

fn diff_errors(old: &OperationSpec, new: &OperationSpec, findings: &mut Vec<Finding>) {
    for (i, error) in old.error_schemas.iter().enumerate() {
        let pointer = format!("/error_schemas/{i}");
        let Some((j, now)) = new
            .error_schemas
            .iter()
            .enumerate()
            .find(|(_, e)| e.code == error.code)
        else {
            findings.push(Finding::new(
                rules::ERROR_REMOVED,
                pointer,
                format!(
                    "the declared error `{}` was removed: typed clients lose its variant, and it now arrives as INTERNAL",
                    error.code
                ),
            ));
            continue;
        };
        if error.http_status != now.http_status {
            findings.push(Finding::new(
                rules::ERROR_STATUS_CHANGED,
                format!("{pointer}/http_status"),
                format!(
                    "`{}` is now HTTP {} (was {})",
                    error.code,
                    now.http_status.unwrap_or(500),
                    error.http_status.unwrap_or(500)
                ),
            ));
        }
        // Details reach the caller as output does.
        let any = Value::Bool(true);
        findings.extend(schema::compare(
            error.schema.as_ref().unwrap_or(&any),
            now.schema.as_ref().unwrap_or(&any),
            schema::Direction::Output,
            &format!("/error_schemas/{j}/schema"),
        ));
    }
    for (j, error) in new.error_schemas.iter().enumerate() {
        if !old.error_schemas.iter().any(|e| e.code == error.code) {
            findings.push(Finding::new(
                rules::ERROR_ADDED,
                format!("/error_schemas/{j}"),
                format!(
                    "a new declared error `{}`: exhaustive matches in typed clients need a new arm",
                    error.code
                ),
            ));
        }
    }
}
