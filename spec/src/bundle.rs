//! [`SpecBundle`]: a set of operation specs as one JSON document.
//!
//! `{"alknet": 1, "operations": [OperationSpec, …]}`, sorted by name. It is what
//! `alknet-codegen` reads, what a runtime registry exports, and what discovery returns piecewise.

use serde::{Deserialize, Serialize};

use crate::spec::{OperationSpec, SpecError};

/// The only bundle format version so far.
pub const BUNDLE_VERSION: u32 = 1;

/// A sorted, validated set of operation specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecBundle {
    /// Format version; always [`BUNDLE_VERSION`].
    pub alknet: u32,
    /// The operations, sorted by name, names unique.
    pub operations: Vec<OperationSpec>,
}

/// Why a bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not JSON, or not the bundle shape.
    #[error("not a spec bundle: {0}")]
    Json(#[from] serde_json::Error),
    /// A version this crate does not know.
    #[error("spec bundle version {0} is not supported (expected {BUNDLE_VERSION})")]
    Version(u32),
    /// One of the operations is invalid.
    #[error("operations[{index}]: {source}")]
    Spec {
        /// Position in `operations`.
        index: usize,
        /// What is wrong.
        source: SpecError,
    },
    /// Two operations share a name.
    #[error("operation `{0}` appears more than once")]
    Duplicate(String),
}

impl SpecBundle {
    /// Builds a bundle from specs in any order: normalizes, validates, sorts, rejects duplicates.
    pub fn new(operations: impl IntoIterator<Item = OperationSpec>) -> Result<Self, BundleError> {
        let mut operations: Vec<OperationSpec> = operations.into_iter().collect();
        for (index, spec) in operations.iter_mut().enumerate() {
            spec.normalize();
            spec.validate()
                .map_err(|source| BundleError::Spec { index, source })?;
        }
        operations.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(pair) = operations.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(BundleError::Duplicate(pair[0].name.clone()));
        }
        Ok(Self {
            alknet: BUNDLE_VERSION,
            operations,
        })
    }

    /// Parses and validates bundle JSON.
    pub fn from_json(text: &str) -> Result<Self, BundleError> {
        let raw: SpecBundle = serde_json::from_str(text)?;
        if raw.alknet != BUNDLE_VERSION {
            return Err(BundleError::Version(raw.alknet));
        }
        Self::new(raw.operations)
    }

    /// Pretty JSON with a trailing newline: stable output for files and golden tests.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a bundle always serializes");
        text.push('\n');
        text
    }

    /// The spec with this registry name.
    pub fn get(&self, name: &str) -> Option<&OperationSpec> {
        self.operations
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.operations[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpType;

    #[test]
    fn sorts_and_rejects_duplicates() {
        let b = OperationSpec::new("z/b", OpType::Query).unwrap();
        let a = OperationSpec::new("a/a", OpType::Mutation).unwrap();
        let bundle = SpecBundle::new([b.clone(), a.clone()]).unwrap();
        assert_eq!(bundle.operations[0].name, "a/a");
        assert_eq!(bundle.get("z/b"), Some(&b));
        assert!(bundle.get("nope/x").is_none());
        assert!(matches!(
            SpecBundle::new([a.clone(), a]),
            Err(BundleError::Duplicate(_))
        ));
    }

    #[test]
    fn json_round_trip_and_errors() {
        let bundle =
            SpecBundle::new([OperationSpec::new("demo/echo", OpType::Query).unwrap()]).unwrap();
        let text = bundle.to_json_pretty();
        assert_eq!(SpecBundle::from_json(&text).unwrap(), bundle);
        assert!(matches!(
            SpecBundle::from_json(r#"{"alknet": 2, "operations": []}"#),
            Err(BundleError::Version(2))
        ));
        assert!(matches!(
            SpecBundle::from_json("not json"),
            Err(BundleError::Json(_))
        ));
        let err = SpecBundle::from_json(
            r#"{"alknet": 1, "operations": [{"name": "bad", "op_type": "query"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("operations[0]"), "{err}");
    }
}
