//! Trait impls shared by this module's string newtypes (`TopicName`, `TopicFilter`), which
//! differ only in how `new` validates.

macro_rules! str_newtype_impls {
    ($t:ident) => {
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
