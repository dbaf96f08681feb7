//! # alknet-codegen
//!
//! Build-time tooling for alknet (design §9). It reads **spec bundles** — the
//! `{"alknet": 1, "operations": [..]}` documents of `alknet-spec` that `alknet spec` exports and
//! that service files describe — and turns them into code and documents. It depends only on the
//! light IR crate, so calling it from a `build.rs` never compiles a network stack.
//!
//! What is here today: loading and validating a bundle file with errors that name the file
//! ([`load_bundle`]), and the `alknet-codegen check FILE` command built on it. Rust generation
//! (typify + prettyplease), service files, and the OpenAPI/MCP projections arrive with the codegen
//! issue and build on [`load_bundle`].

use std::path::{Path, PathBuf};

use alknet_spec::{BundleError, SpecBundle};

/// An error from reading a bundle file, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not a valid spec bundle.
    #[error("{path}: {source}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: BundleError,
    },
}

/// Reads and validates a spec bundle file.
pub fn load_bundle(path: impl AsRef<Path>) -> Result<SpecBundle, CodegenError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| CodegenError::Read {
        path: path.to_owned(),
        source,
    })?;
    SpecBundle::from_json(&text).map_err(|source| CodegenError::Bundle {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("alknet-codegen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(
            &bad,
            r#"{"alknet": 1, "operations": [{"name": "x", "op_type": "query"}]}"#,
        )
        .unwrap();
        let err = load_bundle(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.json") && err.contains("operations[0]"),
            "{err}"
        );

        let missing = load_bundle(dir.join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.json"), "{missing}");

        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"alknet": 1, "operations": [{"name": "a/b", "op_type": "query"}]}"#,
        )
        .unwrap();
        assert_eq!(load_bundle(&good).unwrap().operations.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
