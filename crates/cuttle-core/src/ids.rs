//! Identifier newtypes. Each one validates on construction, so a value of the type is
//! always well formed: a `MachineType` is always a legal beanstalkd tube name, a `NodeName`
//! never has spaces, and so on. Parse at the edge, trust inside.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;

/// A job's id, assigned by cuttle-api when the job is created. Teuthology calls it `job_id`
/// and writes it as a string in job bodies; here it is the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl JobId {
    /// Parses a job id as a user types it (`42`).
    pub fn parse(text: &str) -> Result<JobId, InvalidInput> {
        match text.trim().parse::<i64>() {
            Ok(id) if id > 0 => Ok(JobId(id)),
            _ => Err(InvalidInput::new(
                "job id",
                format!("{text:?} is not a job id; job ids are positive whole numbers such as 42"),
            )),
        }
    }
}

/// Longest name of any kind we accept; long enough for teuthology run names, short enough
/// for a beanstalkd tube (200 bytes).
const MAX_NAME_LEN: usize = 200;

/// Checks a name against a character class and the length limit, with a message that
/// names the field and the characters allowed.
fn check_name(
    field: &'static str,
    text: &str,
    allowed: fn(char) -> bool,
    allowed_description: &str,
) -> Result<(), InvalidInput> {
    if text.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if text.len() > MAX_NAME_LEN {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} characters is too long; at most {MAX_NAME_LEN} are allowed",
                text.len()
            ),
        ));
    }
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        return Err(InvalidInput::new(
            field,
            format!("{text:?} contains {bad:?}; only {allowed_description} are allowed"),
        ));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $field:literal, $allowed:expr, $described:literal, $extra:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `text` and wraps it; the error says which characters are allowed.
            pub fn parse(text: &str) -> Result<Self, InvalidInput> {
                check_name($field, text, $allowed, $described)?;
                path_and_argument_safe($field, text)?;
                let extra: fn(&str) -> Result<(), InvalidInput> = $extra;
                extra(text)?;
                Ok($name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(text: String) -> Result<Self, InvalidInput> {
                $name::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

/// The rule every name obeys because names reach file paths (the archive is
/// `ARCHIVE/RUN/JOB`) and the lab's command templates (`{nodes}`, `{owner}`): a name is
/// never `.` or `..` (a directory escape) and never starts with `-` (an option to the
/// command it is passed to). `/` and NUL are already outside every name's characters.
fn path_and_argument_safe(field: &'static str, text: &str) -> Result<(), InvalidInput> {
    if text == "." || text == ".." {
        return Err(InvalidInput::new(
            field,
            format!("{text:?} is not allowed: it names a directory, not a {field}"),
        ));
    }
    if text.starts_with('-') {
        return Err(InvalidInput::new(
            field,
            format!(
                "{text:?} starts with '-', which a lab command would read as an option; start it with a letter or digit"
            ),
        ));
    }
    Ok(())
}

string_id!(
    /// A run's name, unique in the lab, e.g.
    /// `alice-2026-11-23_10:00:00-rados-main-distro-default-smithi`.
    RunName,
    "run name",
    |c| c.is_ascii_alphanumeric() || "-_.:+@".contains(c),
    "letters, digits and - _ . : + @",
    |_| Ok(())
);

string_id!(
    /// A node's host name, e.g. `smithi001` or `smithi001.front.sepia.ceph.com`.
    NodeName,
    "node name",
    |c| c.is_ascii_alphanumeric() || "-_.".contains(c),
    "letters, digits and - _ .",
    |_| Ok(())
);

string_id!(
    /// A class of identical machines, e.g. `smithi`. It is also the beanstalkd tube its jobs
    /// wait on, so it must be a legal tube name.
    MachineType,
    "machine type",
    |c| c.is_ascii_alphanumeric() || "-_.".contains(c),
    "letters, digits and - _ .",
    |_| Ok(())
);

string_id!(
    /// Who a run or a lock belongs to, teuthology style: `alice` or `scheduled_alice@host`.
    Owner,
    "owner",
    |c| c.is_ascii_alphanumeric() || "-_.@+".contains(c),
    "letters, digits and - _ . @ +",
    |_| Ok(())
);

string_id!(
    /// The name of a saved suite request (a preset), unique per owner, e.g. `rados-nightly`.
    PresetName,
    "preset name",
    |c| c.is_ascii_alphanumeric() || "-_.".contains(c),
    "letters, digits and - _ .",
    |_| Ok(())
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_teuthology_shapes() {
        RunName::parse("alice-2026-11-23_10:00:00-rados-main-distro-default-smithi").unwrap();
        NodeName::parse("smithi001.front.sepia.ceph.com").unwrap();
        MachineType::parse("smithi").unwrap();
        Owner::parse("scheduled_alice@teuthology").unwrap();
    }

    #[test]
    fn names_refuse_bad_characters_with_a_message_that_says_which() {
        let error = NodeName::parse("smithi 001").unwrap_err();
        assert_eq!(error.field, "node name");
        assert!(error.message.contains("' '"), "{error}");
        assert!(MachineType::parse("").is_err());
        assert!(MachineType::parse("-smithi").is_err());
        assert!(MachineType::parse(&"x".repeat(201)).is_err());
        assert!(Owner::parse("alice;rm").is_err());
    }

    #[test]
    fn no_name_escapes_a_directory_or_passes_for_an_option() {
        for bad in [".", "..", "-rf", "--help"] {
            let run = RunName::parse(bad).unwrap_err();
            assert_eq!(run.field, "run name");
            assert!(NodeName::parse(bad).is_err(), "{bad}");
            assert!(MachineType::parse(bad).is_err(), "{bad}");
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
        for bad in ["a/b", "a\0b", "../x"] {
            assert!(RunName::parse(bad).is_err(), "{bad}");
        }
        assert!(
            RunName::parse("..")
                .unwrap_err()
                .message
                .contains("directory")
        );
        // Dots inside a name are fine: host names and teuthology run names have them.
        RunName::parse("a..b").unwrap();
        NodeName::parse("smithi001.front").unwrap();
    }

    #[test]
    fn job_ids_are_positive_numbers() {
        assert_eq!(JobId::parse(" 42 ").unwrap(), JobId(42));
        assert!(JobId::parse("0").is_err());
        assert!(JobId::parse("-3").is_err());
        assert!(JobId::parse("abc").is_err());
    }

    #[test]
    fn conversion_from_string_validates() {
        assert!(MachineType::try_from("smi thi".to_owned()).is_err());
        assert_eq!(
            String::from(MachineType::try_from("smithi".to_owned()).unwrap()),
            "smithi"
        );
    }
}
