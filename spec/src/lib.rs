//! # alknet-spec: the alknet IR
//!
//! Every alknet operation — whether declared with `#[operation]` on a Rust function or in a JSON
//! service file under `schemas/` — is described by one [`OperationSpec`]. The runtime serves it,
//! `alknet-codegen` generates code from it, and the OpenAPI and MCP projections are computed from
//! it. This crate is deliberately light (serde only, no IO, no async runtime) so that a user's
//! `build.rs` can depend on it without compiling a network stack.
//!
//! - [`spec`]: [`OperationSpec`] and its parts, with the exact wire field names of the design.
//! - [`name`]: the operation name rules (`math/add`, at least two segments).
//! - [`bundle`]: [`SpecBundle`], the sorted `{"alknet": 1, "operations": [..]}` document.
//! - [`codes`]: the protocol error codes every transport shares.
//! - [`keywords`]: where schemas hold subschemas, and JSON Pointer escaping.
//! - [`openapi`] and [`mcp`]: the OpenAPI 3.1 document and the MCP tools of a bundle — the same
//!   functions serve them at run time and print them at build time.
//! - [`compat`]: which changes between two bundles break callers, on which surface.
//!
//! ```
//! use alknet_spec::{OperationSpec, OpType};
//! use serde_json::json;
//!
//! let spec = OperationSpec::new("math/add", OpType::Query)
//!     .unwrap()
//!     .with_description("Adds two numbers.")
//!     .with_input_schema(json!({"type": "object", "properties": {"a": {"type": "number"}}}));
//! assert_eq!(spec.namespace, "math");
//! let round_trip: OperationSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
//! assert_eq!(round_trip, spec);
//! ```

#![warn(missing_docs)]

pub mod bundle;
pub mod codes;
pub mod compat;
pub mod keywords;
pub mod mcp;
pub mod name;
pub mod openapi;
pub mod spec;

pub use bundle::{BUNDLE_VERSION, BundleError, SpecBundle};
pub use codes::ProtocolCode;
pub use name::{NameError, OperationName, namespace_of, validate_name};
pub use spec::{
    AccessControl, ErrorSpec, OpType, OperationSpec, SpecError, Visibility, check_error_code,
};
