//! Identifier newtypes, so that a lead id is never passed where an event id is meant.
//!
//! Ids of up to [`INLINE`] bytes (nearly all of them) are kept inline: a
//! lead id is a key of every map and queue of the pipeline, and an id on the
//! heap cost an allocation per copy and a cache miss per comparison.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// The longest id kept without an allocation.
pub const INLINE: usize = 22;

/// An id's text: inline when short, else on the heap.
#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Text {
    fn new(s: &str) -> Text {
        if s.len() > INLINE {
            return Text::Heap(s.into());
        }
        let mut bytes = [0; INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Text::Inline { len: s.len() as u8, bytes }
    }

    fn as_str(&self) -> &str {
        match self {
            Text::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len)];
                // SAFETY: an inline text is only made by `Text::new`, which
                // copies the whole of a `&str`: its bytes are UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            Text::Heap(s) => s,
        }
    }
}

macro_rules! id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        ///
        /// Compared, ordered and hashed as its text (so a map keyed by it can
        /// be searched with a `&str`).
        #[derive(Clone)]
        pub struct $name(Text);

        impl $name {
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(Text::new(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                if s.len() <= INLINE {
                    return $name(Text::new(&s));
                }
                $name(Text::Heap(s.into_boxed_str()))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

id!(
    /// Identifies a lead; also the Kafka key of every record about it.
    LeadId
);
id!(
    /// Identifies an input event; duplicates for the same lead change nothing.
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of(h: impl Hash) -> u64 {
        let mut s = DefaultHasher::new();
        h.hash(&mut s);
        s.finish()
    }

    /// Around the inline limit, in ASCII and in wider characters.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]{0,30}", "L-[0-9]{18,22}", "\\PC{0,30}"]
    }

    #[test]
    fn no_larger_than_a_heap_string_and_its_length() {
        assert!(std::mem::size_of::<LeadId>() <= 24);
    }

    proptest! {
        /// Inline or not, an id is its text: the same string back, the same
        /// order, equality and hash as the strings (maps searched by `&str`
        /// rely on the hash).
        #[test]
        fn behaves_as_its_text(a in text(), b in text(), owned in any::<bool>()) {
            let id = |s: &str| if owned { LeadId::from(s.to_string()) } else { LeadId::from(s) };
            let (x, y) = (id(&a), id(&b));
            prop_assert_eq!(x.as_str(), a.as_str());
            prop_assert_eq!(x.clone(), LeadId::from(a.as_str()));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(hash_of(&x), hash_of(a.as_str()));
            prop_assert_eq!(format!("{x:?}"), format!("{a:?}"));
        }
    }
}
