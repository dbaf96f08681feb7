//! Operation names.
//!
//! A registry name is made of segments of `[A-Za-z0-9_-]+` joined by `/`, with at least two
//! segments and no leading slash (`math/add`, `docker/container/list`). On the wire the
//! `operationId` carries a leading `/`; [`OperationName::parse_wire`] accepts both forms.

use std::fmt;

/// Why a string is not a valid operation name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("operation name is empty")]
    Empty,
    /// Fewer than two segments (`add` instead of `math/add`).
    #[error("operation name `{0}` needs at least two segments, like `service/operation`")]
    TooFewSegments(String),
    /// A segment was empty (`math//add`, trailing slash, or a leading slash in registry form).
    #[error("operation name `{0}` has an empty segment")]
    EmptySegment(String),
    /// A segment held a character outside `[A-Za-z0-9_-]`.
    #[error(
        "operation name `{name}` contains `{ch}`; segments may only use A-Z, a-z, 0-9, `_` and `-`"
    )]
    BadCharacter {
        /// The offending name.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

/// Checks a name in registry form (no leading slash).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let mut segments = 0;
    for segment in name.split('/') {
        if segment.is_empty() {
            return Err(NameError::EmptySegment(name.to_owned()));
        }
        if let Some(ch) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(NameError::BadCharacter {
                name: name.to_owned(),
                ch,
            });
        }
        segments += 1;
    }
    if segments < 2 {
        return Err(NameError::TooFewSegments(name.to_owned()));
    }
    Ok(())
}

/// The namespace of a name: its first segment (`math` for `math/add`).
pub fn namespace_of(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// A validated operation name in registry form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperationName(String);

impl OperationName {
    /// Validates a registry-form name (`math/add`).
    pub fn parse(name: &str) -> Result<Self, NameError> {
        validate_name(name)?;
        Ok(Self(name.to_owned()))
    }

    /// Accepts the wire form (`/math/add`) as well as the registry form.
    pub fn parse_wire(operation_id: &str) -> Result<Self, NameError> {
        Self::parse(operation_id.strip_prefix('/').unwrap_or(operation_id))
    }

    /// The registry form, without a leading slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The wire form used as `operationId`, with a leading slash.
    pub fn wire_id(&self) -> String {
        format!("/{}", self.0)
    }

    /// The first segment.
    pub fn namespace(&self) -> &str {
        namespace_of(&self.0)
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OperationName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for name in ["math/add", "docker/container/list", "a-b/c_d/E9"] {
            validate_name(name).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(
            validate_name("add"),
            Err(NameError::TooFewSegments(_))
        ));
        for name in ["/math/add", "math/", "math//add"] {
            assert!(matches!(
                validate_name(name),
                Err(NameError::EmptySegment(_))
            ));
        }
        assert!(matches!(
            validate_name("math/a.dd"),
            Err(NameError::BadCharacter { ch: '.', .. })
        ));
        assert!(matches!(
            validate_name("math/ä"),
            Err(NameError::BadCharacter { ch: 'ä', .. })
        ));
    }

    #[test]
    fn wire_form() {
        let name = OperationName::parse_wire("/math/add").unwrap();
        assert_eq!(name.as_str(), "math/add");
        assert_eq!(name.wire_id(), "/math/add");
        assert_eq!(name.namespace(), "math");
        assert_eq!(OperationName::parse_wire("math/add").unwrap(), name);
        assert!(OperationName::parse_wire("//math/add").is_err());
    }
}
