//! Parsing YAML under a budget. A body of a few kilobytes can name one anchor thousands
//! of times (`*a`), and a YAML library that expands aliases then builds gigabytes: the
//! review's 62 KB body grew cuttle-api past 1.8 GB in 8 s. [`check`] walks the document
//! as the real parser sees it, aliases expanded, and stops as soon as the expanded
//! document passes [`MAX_NODES`] nodes or [`MAX_DEPTH`] levels, before anything is built.
//!
//! It never allocates for the document: the walk keeps a counter and a depth, nothing
//! else. Callers run it (and the parse after it) on a blocking thread, never on an async
//! worker.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Most nodes (scalars, sequences, mappings; aliases counted as what they expand to) a
/// document may have. A large teuthology job config has a few thousand.
pub const MAX_NODES: usize = 100_000;

/// Deepest nesting allowed. Real job configs nest fewer than 15 levels.
pub const MAX_DEPTH: usize = 64;

/// Most bytes of scalar text a document may expand to (aliases counted as what they
/// repeat): one long string named a hundred thousand times is an alias bomb too.
pub const MAX_EXPANDED_BYTES: usize = 8 << 20;

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverBudget {
    /// More nodes than [`MAX_NODES`], or more text than [`MAX_EXPANDED_BYTES`], once
    /// aliases are expanded.
    TooManyNodes,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Not YAML at all (the parser's message).
    Invalid(String),
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverBudget::TooManyNodes => write!(
                f,
                "expands to more than {MAX_NODES} YAML nodes or {} MiB of text (aliases counted as what they repeat); a job config needs far less, so this looks like an alias bomb",
                MAX_EXPANDED_BYTES >> 20
            ),
            OverBudget::TooDeep => write!(f, "nests deeper than {MAX_DEPTH} levels"),
            OverBudget::Invalid(message) => write!(f, "is not valid YAML: {message}"),
        }
    }
}

const TOO_MANY: &str = "cuttle budget: too many nodes";
const TOO_DEEP: &str = "cuttle budget: too deep";

/// Checks `text` fits the budget without building it.
pub fn check(text: &str) -> Result<(), OverBudget> {
    let remaining = Cell::new(MAX_NODES);
    let bytes = Cell::new(MAX_EXPANDED_BYTES);
    let walk = Walk {
        remaining: &remaining,
        bytes: &bytes,
        depth: 0,
    };
    for document in serde_yaml::Deserializer::from_str(text) {
        if let Err(error) = walk.deserialize(document) {
            let message = error.to_string();
            return Err(if message.contains(TOO_MANY) {
                OverBudget::TooManyNodes
            } else if message.contains(TOO_DEEP) || message.contains("recursion limit") {
                OverBudget::TooDeep
            } else {
                OverBudget::Invalid(message)
            });
        }
    }
    Ok(())
}

/// Visits one node and everything under it, counting.
#[derive(Clone, Copy)]
struct Walk<'a> {
    remaining: &'a Cell<usize>,
    bytes: &'a Cell<usize>,
    depth: usize,
}

impl Walk<'_> {
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let left = self.remaining.get();
        if left == 0 {
            return Err(E::custom(TOO_MANY));
        }
        self.remaining.set(left - 1);
        Ok(())
    }

    /// Counts a scalar's text against the byte budget (and the node itself).
    fn text<E: de::Error>(&self, len: usize) -> Result<(), E> {
        let left = self.bytes.get();
        if len > left {
            return Err(E::custom(TOO_MANY));
        }
        self.bytes.set(left - len);
        self.count()
    }

    fn deeper<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(Walk {
            remaining: self.remaining,
            bytes: self.bytes,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.count()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.count()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.count()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.count()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.count()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.count()
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.text(text.len())
    }
    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<(), E> {
        self.text(bytes.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.count()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.count()
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.count()?;
        self.deeper()?.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.count()?;
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.count()?;
        let inner = self.deeper()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): the tag, then the value under it.
        use de::VariantAccess;
        self.count()?;
        let inner = self.deeper()?;
        let ((), variant) = data.variant_seed(inner)?;
        variant.newtype_variant_seed(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The review's body: one anchor of 15,000 scalars, 8,000 aliases to it.
    fn alias_bomb() -> String {
        let mut text = String::from("a: &a [");
        for i in 0..15_000 {
            if i > 0 {
                text.push(',');
            }
            text.push('1');
        }
        text.push_str("]\nb: [");
        for i in 0..8_000 {
            if i > 0 {
                text.push(',');
            }
            text.push_str("*a");
        }
        text.push_str("]\n");
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly_and_small() {
        let bomb = alias_bomb();
        assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
        let started = std::time::Instant::now();
        assert_eq!(check(&bomb), Err(OverBudget::TooManyNodes));
        // Generous for a debug build on a loaded 2-core machine; the real cost is the
        // budget's 100,000 nodes, not the bomb's 120 million.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_long_string_repeated_by_aliases_is_refused() {
        // 100 KB named 200 times: few nodes, 20 MB of text.
        let text = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(100_000),
            vec!["*a"; 200].join(",")
        );
        assert_eq!(check(&text), Err(OverBudget::TooManyNodes));
        // The same string named 20 times is 2 MB: fine.
        let text = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(100_000),
            vec!["*a"; 20].join(",")
        );
        assert_eq!(check(&text), Ok(()));
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 5),
            "]".repeat(MAX_DEPTH + 5)
        );
        assert_eq!(check(&deep), Err(OverBudget::TooDeep));
        let fine = format!("{}1{}", "[".repeat(20), "]".repeat(20));
        assert_eq!(check(&fine), Ok(()));
    }

    #[test]
    fn ordinary_configs_and_modest_aliases_pass() {
        let config = "overrides: &o {ceph: {conf: {osd: {debug osd: 20}}}}\nroles: [[mon.a, osd.0], [client.0]]\ntasks:\n- install: null\n- ceph: *o\n- !tagged {x: 1}\n";
        assert_eq!(check(config), Ok(()));
        assert!(matches!(check("a: [1, 2"), Err(OverBudget::Invalid(_))));
    }
}
