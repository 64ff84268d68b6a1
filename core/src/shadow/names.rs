//! Thing and shadow names, checked once at the edge so the rest of the shadow code can trust
//! them (they end up in topics, in the 404 message and in storage keys).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which kind of name failed validation, so one error type serves both newtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A thing name (AWS: 1 to 128 bytes).
    Thing,
    /// A named shadow's name (AWS: 1 to 64 bytes).
    Shadow,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Thing => "thing",
            NameKind::Shadow => "shadow",
        })
    }
}

/// Why a thing or shadow name was refused. Small and `Copy`: it is built on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// AWS names are at least one byte long.
    #[error("{kind} name is empty")]
    Empty { kind: NameKind },
    /// Over the AWS length limit for this kind of name.
    #[error("{kind} name is {len} bytes, over the limit of {max}")]
    TooLong {
        kind: NameKind,
        len: usize,
        max: usize,
    },
    /// AWS allows only `[a-zA-Z0-9:_-]`; anything else (notably `/`, `+`, `#`) would also break
    /// the shadow topics.
    #[error("{kind} name has a byte outside [a-zA-Z0-9:_-] at offset {at}")]
    InvalidChar { kind: NameKind, at: usize },
}

fn validate(s: &str, kind: NameKind, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    match s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-')))
    {
        Some(at) => Err(NameError::InvalidChar { kind, at }),
        None => Ok(()),
    }
}

/// One macro for the two name newtypes, which differ only in their kind and length limit.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The AWS length limit, in bytes.
            pub const MAX_BYTES: usize = $max;

            /// Checks `name` against the AWS rules.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                validate(&name, $kind, $max)?;
                Ok(Self(name))
            }

            /// Checks `name` against the AWS rules without taking it.
            pub fn check(name: &str) -> Result<(), NameError> {
                validate(name, $kind, $max)
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A thing name: 1 to 128 bytes of `[a-zA-Z0-9:_-]`, as AWS IoT allows.
    ThingName,
    NameKind::Thing,
    128
);

name_type!(
    /// A named shadow's name: 1 to 64 bytes of `[a-zA-Z0-9:_-]`, as AWS IoT allows.
    ShadowName,
    NameKind::Shadow,
    64
);

/// Which shadow a request is about: a thing's classic (unnamed) shadow, or one of its named
/// shadows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShadowKey {
    /// The thing the shadow belongs to.
    pub thing: ThingName,
    /// `None` for the classic shadow (topic `$aws/things/{thing}/shadow`), else the name in
    /// `$aws/things/{thing}/shadow/name/{name}`.
    pub name: Option<ShadowName>,
}

impl ShadowKey {
    /// The classic (unnamed) shadow of `thing`.
    pub fn classic(thing: ThingName) -> Self {
        Self { thing, name: None }
    }

    /// The shadow of `thing` called `name`.
    pub fn named(thing: ThingName, name: ShadowName) -> Self {
        Self {
            thing,
            name: Some(name),
        }
    }

    /// The name AWS quotes in "No shadow exists with name: '...'": the thing name for a
    /// classic shadow, the shadow name for a named one.
    pub fn display_name(&self) -> &str {
        match &self.name {
            Some(name) => name.as_str(),
            None => self.thing.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_name_accepts_the_aws_charset_up_to_128_bytes() {
        assert!(ThingName::new("my-Thing_01:a").is_ok());
        assert!(ThingName::new("a".repeat(128)).is_ok());
        assert_eq!(
            ThingName::new("a".repeat(129)),
            Err(NameError::TooLong {
                kind: NameKind::Thing,
                len: 129,
                max: 128
            })
        );
        assert_eq!(
            ThingName::new(""),
            Err(NameError::Empty {
                kind: NameKind::Thing
            })
        );
        assert_eq!(
            ThingName::new("a/b"),
            Err(NameError::InvalidChar {
                kind: NameKind::Thing,
                at: 1
            })
        );
        for bad in ["a+", "#", "a b", "é", "a.b", "$aws"] {
            assert!(ThingName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shadow_name_limit_is_64_bytes() {
        assert!(ShadowName::new("s".repeat(64)).is_ok());
        assert_eq!(
            ShadowName::new("s".repeat(65)),
            Err(NameError::TooLong {
                kind: NameKind::Shadow,
                len: 65,
                max: 64
            })
        );
        assert_eq!(
            ShadowName::new(""),
            Err(NameError::Empty {
                kind: NameKind::Shadow
            })
        );
    }

    #[test]
    fn names_round_trip_through_serde_and_refuse_bad_input() {
        let key = ShadowKey::named(
            ThingName::new("t1").unwrap_or_else(|e| panic!("{e}")),
            ShadowName::new("s1").unwrap_or_else(|e| panic!("{e}")),
        );
        let text = serde_json::to_string(&key).unwrap_or_default();
        assert_eq!(text, r#"{"thing":"t1","name":"s1"}"#);
        let back: ShadowKey = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, key);
        assert!(serde_json::from_str::<ThingName>(r#""a/b""#).is_err());
    }

    #[test]
    fn display_name_is_thing_for_classic_and_shadow_for_named() {
        let thing = ThingName::new("lamp").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ShadowKey::classic(thing.clone()).display_name(), "lamp");
        let named = ShadowKey::named(
            thing,
            ShadowName::new("cfg").unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(named.display_name(), "cfg");
    }
}
