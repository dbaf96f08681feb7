//! [`CallError`]: the `call.error` payload, used as the error type of every call.

use std::fmt;

use alknet_spec::{OperationSpec, ProtocolCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An error answer to a call: exactly the `call.error` payload of design §4.2.
///
/// Handlers return it to fail a call, with a protocol code or a domain code declared in the
/// operation's `error_schemas`; callers receive it from every transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallError {
    /// A protocol code (`NOT_FOUND`, …) or a declared domain code (`DEMO_FAILED`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the same request may succeed if retried. Only `TIMEOUT` is retryable among the
    /// protocol codes.
    #[serde(default)]
    pub retryable: bool,
    /// Structured details: the failing JSON pointer for `INVALID_INPUT`, a domain error's data, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl CallError {
    /// An error with a protocol code; `retryable` follows the code.
    pub fn protocol(code: ProtocolCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str().to_owned(),
            message: message.into(),
            retryable: code.retryable(),
            details: None,
        }
    }

    /// `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::protocol(ProtocolCode::NotFound, message)
    }

    /// `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::protocol(ProtocolCode::Forbidden, message)
    }

    /// `INVALID_INPUT`, with the failing JSON pointer in `details.pointer`.
    pub fn invalid_input(message: impl Into<String>, pointer: impl Into<String>) -> Self {
        Self::protocol(ProtocolCode::InvalidInput, message)
            .with_details(json!({ "pointer": pointer.into() }))
    }

    /// `INVALID_OPERATION_TYPE`.
    pub fn invalid_operation_type(message: impl Into<String>) -> Self {
        Self::protocol(ProtocolCode::InvalidOperationType, message)
    }

    /// `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::protocol(ProtocolCode::Internal, message)
    }

    /// `TIMEOUT` (retryable).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::protocol(ProtocolCode::Timeout, message)
    }

    /// A domain error. The code should be declared in the operation's `error_schemas`;
    /// an undeclared code reaches the caller as `INTERNAL` (see [`CallError::for_operation`]).
    pub fn domain(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: false,
            details: None,
        }
    }

    /// Attaches details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Marks the error retryable (for domain errors that are).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The protocol code, treating any other code as `INTERNAL` (as §4.5 asks of clients that do
    /// not know the operation's domain errors).
    pub fn protocol_code(&self) -> ProtocolCode {
        self.code.parse().unwrap_or(ProtocolCode::Internal)
    }

    /// True when the code is this protocol code.
    pub fn is(&self, code: ProtocolCode) -> bool {
        self.code == code.as_str()
    }

    /// Normalizes an error a handler of `spec` produced, before it goes on the wire: protocol
    /// codes and declared domain codes pass through; anything else becomes `INTERNAL` with the
    /// original code and details kept in `details`.
    pub fn for_operation(self, spec: &OperationSpec) -> Self {
        if ProtocolCode::is_protocol_code(&self.code) || spec.declared_error(&self.code).is_some() {
            return self;
        }
        let mut details = json!({ "code": self.code });
        if let Some(original) = self.details {
            details["details"] = original;
        }
        CallError::internal(self.message).with_details(details)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alknet_spec::{ErrorSpec, OpType};

    #[test]
    fn undeclared_domain_codes_become_internal() {
        let spec = OperationSpec::new("demo/fail", OpType::Mutation)
            .unwrap()
            .with_error(ErrorSpec::new("DEMO_FAILED", "it failed").with_http_status(409));
        let declared = CallError::domain("DEMO_FAILED", "nope").for_operation(&spec);
        assert_eq!(declared.code, "DEMO_FAILED");
        let protocol = CallError::not_found("x").for_operation(&spec);
        assert_eq!(protocol.code, "NOT_FOUND");
        let other = CallError::domain("OTHER", "hm")
            .with_details(json!({"k": 1}))
            .for_operation(&spec);
        assert_eq!(other.code, "INTERNAL");
        assert_eq!(
            other.details,
            Some(json!({"code": "OTHER", "details": {"k": 1}}))
        );
        assert_eq!(other.protocol_code(), ProtocolCode::Internal);
    }

    #[test]
    fn wire_shape() {
        let err = CallError::invalid_input("bad", "/a");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"code": "INVALID_INPUT", "message": "bad", "retryable": false, "details": {"pointer": "/a"}})
        );
        assert!(CallError::timeout("t").retryable);
    }
}
