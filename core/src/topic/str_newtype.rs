//! Trait impls shared by this module's string newtypes (`TopicName`, `TopicFilter`), which
//! differ only in how `new` validates.

macro_rules! str_newtype_impls {
    ($t:ident) => {
        impl $t {
            /// Validates a string literal without copying it (the `ByteString` points at the
            /// static). Returns a `Result` rather than panicking: a typo in a literal should be
            /// a handled error, not a broker crash.
            pub fn from_static(s: &'static str) -> Result<Self, TopicError> {
                Self::new(ByteString::from_static(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The underlying `ByteString` (clone it to share the buffer).
            pub fn as_bytestring(&self) -> &ByteString {
                &self.0
            }

            pub fn into_bytestring(self) -> ByteString {
                self.0
            }

            /// The `/`-separated levels, lazily; empty levels are kept (`a//b` yields `a`,
            /// ``, `b`).
            pub fn levels(&self) -> impl Iterator<Item = &str> + '_ {
                self.0.split('/')
            }

            /// The number of levels (always at least one).
            pub fn level_count(&self) -> usize {
                count_levels(&self.0)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({:?})"), self.as_str())
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl TryFrom<ByteString> for $t {
            type Error = TopicError;
            fn try_from(s: ByteString) -> Result<Self, TopicError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $t {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, TopicError> {
                Self::new(ByteString::from(s))
            }
        }

        impl TryFrom<String> for $t {
            type Error = TopicError;
            fn try_from(s: String) -> Result<Self, TopicError> {
                Self::new(ByteString::from(s))
            }
        }

        impl From<$t> for ByteString {
            fn from(t: $t) -> ByteString {
                t.0
            }
        }
    };
}
