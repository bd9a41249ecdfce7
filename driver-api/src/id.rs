//! Validated container identifiers.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DriverError;

/// The longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A container identifier.
///
/// An id becomes a path component (state directory) and a cgroup name, so it is validated on
/// construction: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_.-]`, and neither `.` nor `..`.
/// It can therefore never carry `/`, NUL, whitespace or anything a shell or a path would treat
/// specially.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    /// Validates `id` and wraps it.
    ///
    /// # Errors
    /// [`DriverError::InvalidId`] naming what is wrong with the id.
    pub fn new(id: impl Into<String>) -> Result<Self, DriverError> {
        let id = id.into();
        match validate(&id) {
            Ok(()) => Ok(Self(id)),
            Err(reason) => Err(DriverError::InvalidId {
                id: printable(&id),
                reason,
            }),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("longer than 128 characters");
    }
    if id == "." || id == ".." {
        return Err("must not be \".\" or \"..\"");
    }
    if id.contains('/') {
        return Err("must not contain '/'");
    }
    if id.contains('\0') {
        return Err("must not contain NUL");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("may only contain A-Z, a-z, 0-9, '_', '.' and '-'");
    }
    Ok(())
}

/// A short, escaped rendering of untrusted input for error messages.
fn printable(id: &str) -> String {
    const SHOWN: usize = 40;
    let mut out: String = id
        .chars()
        .take(SHOWN)
        .flat_map(char::escape_debug)
        .collect();
    let total = id.chars().count();
    if total > SHOWN {
        out.push_str(&format!("... ({total} characters)"));
    }
    out
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ContainerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = DriverError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ContainerId {
    type Error = DriverError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for ContainerId {
    type Error = DriverError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl Serialize for ContainerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ContainerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in ["a", "web-1", "A.b_c-9", "..a", "a..", &"x".repeat(128)] {
            assert_eq!(ContainerId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_bad_ids_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            (".", "\"..\""),
            ("..", "\"..\""),
            ("a/b", "'/'"),
            ("/", "'/'"),
            ("../etc", "'/'"),
            ("a\0b", "NUL"),
            ("a b", "may only contain"),
            ("é", "may only contain"),
            ("a\nb", "may only contain"),
        ];
        for (id, reason) in cases {
            let err = ContainerId::new(*id).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(reason), "{id:?}: {msg}");
            assert!(matches!(err, DriverError::InvalidId { .. }));
        }
    }

    #[test]
    fn huge_id_is_rejected_and_message_stays_short() {
        let id = "a".repeat(10_000);
        let msg = ContainerId::new(id).unwrap_err().to_string();
        assert!(msg.contains("longer than 128"), "{msg}");
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: ContainerId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abc\"");
        assert!(serde_json::from_str::<ContainerId>("\"a/b\"").is_err());
    }

    proptest! {
        #[test]
        fn valid_ids_are_exactly_the_safe_path_components(s in "\\PC{0,140}") {
            let ok = ContainerId::new(s.clone()).is_ok();
            let expected = !s.is_empty()
                && s.len() <= MAX_ID_LEN
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            prop_assert_eq!(ok, expected);
            if ok {
                // A valid id is always one normal path component.
                let p = std::path::Path::new(&s);
                let mut comps = p.components();
                prop_assert!(matches!(comps.next(), Some(std::path::Component::Normal(_))));
                prop_assert!(comps.next().is_none());
            }
        }

        #[test]
        fn generated_valid_ids_are_accepted(s in "[A-Za-z0-9_.-]{1,128}") {
            prop_assume!(s != "." && s != "..");
            prop_assert!(ContainerId::new(s).is_ok());
        }
    }
}
