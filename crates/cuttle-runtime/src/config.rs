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
