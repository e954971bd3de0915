//! Why a Neutron object cannot be translated.

use std::fmt;

/// A Neutron object that cannot be expressed in Calico's data model: which
/// object (`port <id>`, `security group <id> rule <id>`, `subnet <id>`), which
/// of its fields, and what is wrong. Nothing of an object is written when
/// any part of it fails, so the driver can report the error on the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub object: String,
    pub field: String,
    pub message: String,
}

impl Error {
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: field {}: {}", self.object, self.field, self.message)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Decodes a Neutron dict into `T`, naming the field that does not fit.
pub(crate) fn from_dict<T: serde::de::DeserializeOwned>(
    object: &str,
    value: &serde_json::Value,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        Error::new(object, field, e.into_inner().to_string())
    })
}
