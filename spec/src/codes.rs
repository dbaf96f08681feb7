//! Protocol error codes (design §4.5), shared by every transport.
//!
//! Domain errors declared by an operation use their own codes, which must not reuse these.

use std::fmt;
use std::str::FromStr;

/// An error code defined by the call protocol itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolCode {
    /// The operation does not exist, or is internal.
    NotFound,
    /// The caller may not call the operation.
    Forbidden,
    /// The input does not match the operation's input schema.
    InvalidInput,
    /// A query/mutation was subscribed to, or a subscription was called.
    InvalidOperationType,
    /// Anything else: handler failures, panics, closed connections, unknown codes.
    Internal,
    /// The deadline expired. The only retryable protocol error.
    Timeout,
}

impl ProtocolCode {
    /// Every protocol code.
    pub const ALL: [ProtocolCode; 6] = [
        ProtocolCode::NotFound,
        ProtocolCode::Forbidden,
        ProtocolCode::InvalidInput,
        ProtocolCode::InvalidOperationType,
        ProtocolCode::Internal,
        ProtocolCode::Timeout,
    ];

    /// The wire spelling, e.g. `NOT_FOUND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProtocolCode::NotFound => "NOT_FOUND",
            ProtocolCode::Forbidden => "FORBIDDEN",
            ProtocolCode::InvalidInput => "INVALID_INPUT",
            ProtocolCode::InvalidOperationType => "INVALID_OPERATION_TYPE",
            ProtocolCode::Internal => "INTERNAL",
            ProtocolCode::Timeout => "TIMEOUT",
        }
    }

    /// Whether a caller may retry the same request.
    pub const fn retryable(self) -> bool {
        matches!(self, ProtocolCode::Timeout)
    }

    /// Whether `code` is one of the protocol codes.
    pub fn is_protocol_code(code: &str) -> bool {
        code.parse::<ProtocolCode>().is_ok()
    }
}

impl fmt::Display for ProtocolCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a string is not a protocol code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a protocol error code")]
pub struct UnknownProtocolCode(pub String);

impl FromStr for ProtocolCode {
    type Err = UnknownProtocolCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProtocolCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownProtocolCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_retryable() {
        for code in ProtocolCode::ALL {
            assert_eq!(code.as_str().parse::<ProtocolCode>().unwrap(), code);
            assert_eq!(code.retryable(), code == ProtocolCode::Timeout);
        }
        assert!("DEMO_FAILED".parse::<ProtocolCode>().is_err());
    }
}
