//! Ids as callers send them and as the service answers: numbers for a model
//! trained on numeric ids, the strings it was trained on otherwise (ISBNs,
//! UUIDs). Each model of a service keeps its own dictionary, so an id is
//! resolved per model; arms and interleaving coins hash the caller's id, never
//! a model's internal number.

use std::fmt;

use reelkit_ranker::Ranker;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A user or video id: a JSON number, or a JSON string. A string holding a
/// plain unsigned number (`"42"`, not `"042"`) is the number: the same id
/// whichever way a client spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A numeric id.
    Number(u64),
    /// A string id (answers of a model trained on string ids).
    Text(String),
}

impl Id {
    /// `s` as an id: a canonical unsigned number becomes [`Id::Number`].
    pub fn parse(s: &str) -> Id {
        match s.parse::<u64>() {
            Ok(n) if n.to_string() == s => Id::Number(n),
            _ => Id::Text(s.to_string()),
        }
    }

    /// The number arms and interleaving coins hash: the number itself, or a
    /// 64-bit FNV-1a hash of the string's UTF-8 bytes (stable across
    /// versions, platforms and models).
    pub(crate) fn hash_key(&self) -> u64 {
        match self {
            Id::Number(n) => *n,
            Id::Text(s) => s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            }),
        }
    }

    /// The id as `ranker` numbers its users: `Ok(None)` for a string-id
    /// model that does not know it; an error for text sent to a model of
    /// numeric ids.
    pub(crate) fn user_in(&self, ranker: &Ranker) -> Result<Option<u64>, String> {
        self.resolve(ranker.keyed().0, "user", |k| ranker.user_of_key(k))
    }

    /// The id as `ranker` numbers its videos (see [`Id::user_in`]).
    pub(crate) fn video_in(&self, ranker: &Ranker) -> Result<Option<u64>, String> {
        self.resolve(ranker.keyed().1, "video", |k| ranker.item_of_key(k))
    }

    fn resolve(
        &self,
        keyed: bool,
        what: &str,
        of_key: impl Fn(&str) -> Option<u64>,
    ) -> Result<Option<u64>, String> {
        match (self, keyed) {
            (Id::Number(n), false) => Ok(Some(*n)),
            (Id::Text(s), false) => Err(format!(
                "{what} id `{}` is not a number, and this model's {what}s are numbers",
                cut(s)
            )),
            (Id::Number(n), true) => Ok(of_key(&n.to_string())),
            (Id::Text(s), true) => Ok(of_key(s)),
        }
    }

    /// Video `id` of `ranker` as the caller knows it.
    pub(crate) fn video_of(ranker: &Ranker, id: u64) -> Id {
        match ranker.item_key(id) {
            Some(k) => Id::Text(k.to_string()),
            None => Id::Number(id),
        }
    }
}

/// At most 64 characters of a caller's string, for messages.
fn cut(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::Text(s) => write!(f, "{}", cut(s)),
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Id {
        Id::Number(n)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => s.serialize_u64(*n),
            Id::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id: an unsigned integer or a non-empty string")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                Ok(Id::Number(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                u64::try_from(n).map(Id::Number).map_err(|_| {
                    E::custom(format!(
                        "id {n} is negative; ids are unsigned integers or strings"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Id, E> {
                Err(E::custom(format!(
                    "id {x} is not an integer; ids are unsigned integers or strings"
                )))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                if s.is_empty() {
                    return Err(E::custom("an id is the empty string"));
                }
                Ok(Id::parse(s))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_numbers_or_strings_and_numeric_strings_are_numbers() {
        let read = |s: &str| serde_json::from_str::<Id>(s);
        assert_eq!(read("42").unwrap(), Id::Number(42));
        assert_eq!(read("\"42\"").unwrap(), Id::Number(42));
        assert_eq!(read("\"042\"").unwrap(), Id::Text("042".into()));
        assert_eq!(
            read("\"034545104X\"").unwrap(),
            Id::Text("034545104X".into())
        );
        assert!(read("-5").unwrap_err().to_string().contains("negative"));
        assert!(read("1.5")
            .unwrap_err()
            .to_string()
            .contains("not an integer"));
        assert!(read("\"\"").unwrap_err().to_string().contains("empty"));
        assert!(read("true").is_err());
        assert_eq!(
            serde_json::to_string(&Id::Text("a\"b".into())).unwrap(),
            r#""a\"b""#
        );
        assert_eq!(serde_json::to_string(&Id::Number(7)).unwrap(), "7");
    }

    #[test]
    fn string_ids_hash_stably_and_numbers_hash_as_themselves() {
        assert_eq!(Id::Number(12345).hash_key(), 12345);
        assert_eq!(Id::parse("12345").hash_key(), 12345);
        // FNV-1a 64 of "a" and of the empty string (the published test vectors).
        assert_eq!(Id::Text("a".into()).hash_key(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Id::Text(String::new()).hash_key(), 0xcbf2_9ce4_8422_2325);
    }
}
