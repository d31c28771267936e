//! Secret values (injected header values). They print as `[redacted]` everywhere: Debug,
//! Display and serde. The only way to read one is [`Secret::expose`], which egress calls when it
//! writes the header onto the wire.

use std::fmt;

/// A secret value: a type rather than a convention, so no `{:?}`, `{}` or serialization of a
/// grant, a denial or a record can print it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn new(value: impl Into<Vec<u8>>) -> Secret {
        Secret(value.into())
    }

    /// The raw value. Call only where the value leaves for the granted server.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s} {}", serde_json::to_string(&s).unwrap()).contains("hunter2"));
        assert_eq!(s.expose(), b"hunter2");
    }
}
