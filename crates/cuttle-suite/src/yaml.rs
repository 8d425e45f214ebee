//! Reading a fragment as PyYAML's `safe_load` reads it: a key given twice in one mapping
//! is not an error, the later value wins (in the first one's place). serde_yaml refuses
//! duplicate keys, which would refuse fragments teuthology schedules.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Number, Value};

/// A YAML value built with PyYAML's rule for repeated keys.
struct Lenient(Value);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor).map(Lenient)
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Lenient::deserialize(deserializer).map(|l| l.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Lenient(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some((Lenient(key), Lenient(value))) = map.next_entry()? {
            // Later wins, in the first one's place, as a Python dict does.
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // A tagged value (`!tag value`): PyYAML's safe_load refuses tags it does not know.
        let tagged: serde_yaml::value::TaggedValue =
            Deserialize::deserialize(de::value::EnumAccessDeserializer::new(data))?;
        Err(de::Error::custom(format!(
            "the YAML tag {} is not one safe_load knows",
            tagged.tag
        )))
    }
}

/// Parses a fragment's text, repeated keys allowed (the later one wins).
pub fn parse(text: &str) -> Result<Value, serde_yaml::Error> {
    let Lenient(value) = serde_yaml::from_str(text)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_the_later_value_in_the_first_place() {
        let value = parse("a: 1\nb: {x: 1, x: 2}\na: 3\n").unwrap();
        let strict: Value = serde_yaml::from_str("a: 3\nb: {x: 2}\n").unwrap();
        assert_eq!(value, strict);
        let keys: Vec<&str> = value
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn everything_else_reads_as_serde_yaml_reads_it() {
        let text = "s: text\ni: -3\nu: 18446744073709551615\nf: 1.5\nb: true\nn: null\nl: [1, two, {three: 3}]\nempty: {}\n? [complex, key]\n: v\n";
        assert_eq!(
            parse(text).unwrap(),
            serde_yaml::from_str::<Value>(text).unwrap()
        );
        assert!(parse("a: [unclosed\n").is_err());
    }
}
