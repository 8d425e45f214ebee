//! Reading a daemon's TOML config file into its settings struct.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Reads and parses `path`, or returns the defaults when no file was given. Unknown keys
/// are errors (the settings structs use `deny_unknown_fields`), so a typo in a key is
/// reported instead of silently ignored.
pub fn load_file<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses config text; the error carries TOML's line and column.
pub fn parse<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    Ok(toml::from_str(text)?)
}

/// The keys a config struct accepts, as serde knows them (its field names after
/// renames), for checks that every key is documented. Works for structs deserialized
/// with `#[derive(Deserialize)]`; anything else gives an empty list.
pub fn keys<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(KeyProbe { keys: &mut keys });
    keys
}

/// A deserializer that only records the field names a struct asks for, then stops.
struct KeyProbe<'k> {
    keys: &'k mut &'static [&'static str],
}

#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("keys probed")
    }
}

impl std::error::Error for Probed {}

impl serde::de::Error for Probed {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Probed
    }
}

impl<'de> serde::Deserializer<'de> for KeyProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        *self.keys = fields;
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Example {
        listen: Option<String>,
        workers: u32,
    }

    #[test]
    fn keys_are_the_struct_fields() {
        assert_eq!(keys::<Example>(), ["listen", "workers"]);
        assert!(keys::<u32>().is_empty());
    }

    #[test]
    fn no_file_means_defaults() {
        assert_eq!(load_file::<Example>(None).unwrap(), Example::default());
    }

    #[test]
    fn unknown_keys_and_missing_files_are_named() {
        let error = parse::<Example>("listne = \"x\"\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown field `listne`"),
            "{error:#}"
        );
        let error = load_file::<Example>(Some(Path::new("/nonexistent/cuttle.toml"))).unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/cuttle.toml"),
            "{error:#}"
        );
        let error = parse::<Example>("workers = \"many\"\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    }
}
