//! teuthology's deep merge of YAML fragments, on `serde_yaml` values.
//!
//! Mappings merge key by key (a new key goes last, an existing one keeps its place),
//! sequences append, and anything else is replaced. A `null` on the right leaves the
//! left alone (and creates the key as `null` when it was missing). A mapping merged into
//! a sequence, or the other way round, is an error: teuthology stops there too.

use serde_yaml::{Mapping, Value};

/// Two values of different shapes met at `at` (a dotted key path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge a {right} into the {left} at `{at}`")]
pub struct ShapeMismatch {
    pub at: String,
    pub left: &'static str,
    pub right: &'static str,
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Mapping(_) => "mapping",
        Value::Sequence(_) => "list",
        Value::Null => "null",
        Value::Tagged(_) => "tagged value",
        _ => "scalar",
    }
}

/// Merges `right` into `left` as teuthology's `deep_merge(left, right)` does.
pub fn deep_merge(left: &mut Value, right: Value) -> Result<(), ShapeMismatch> {
    merge_ref(left, &right)
}

/// [`deep_merge`] from a borrowed right side: only what lands in `left` is copied. The
/// one implementation of the merge; a fragment merges from the cache through it.
pub fn merge_ref(left: &mut Value, right: &Value) -> Result<(), ShapeMismatch> {
    match (left, right) {
        (_, Value::Null) => Ok(()),
        (Value::Mapping(map), Value::Mapping(more)) => {
            for (key, value) in more {
                match map.get_mut(key) {
                    Some(existing) => merge_ref(existing, value).map_err(|mut e| {
                        e.at = if e.at.is_empty() {
                            key_text(key)
                        } else {
                            format!("{}.{}", key_text(key), e.at)
                        };
                        e
                    })?,
                    None => {
                        map.insert(key.clone(), value.clone());
                    }
                }
            }
            Ok(())
        }
        (Value::Sequence(items), Value::Sequence(more)) => {
            items.extend(more.iter().cloned());
            Ok(())
        }
        (left @ Value::Null, right) => {
            *left = right.clone();
            Ok(())
        }
        (left @ (Value::Sequence(_) | Value::Mapping(_)), right) => Err(ShapeMismatch {
            at: String::new(),
            left: shape(left),
            right: shape(right),
        }),
        (left, right) => {
            *left = right.clone();
            Ok(())
        }
    }
}

/// A mapping key as text, for messages and for JSON.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "True".into()
            } else {
                "False".into()
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Null => "None".into(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    }
}

/// Where teuthology's `update_key(key, a, b)` would write: the key paths in `b` that
/// end in `key`, with the value each writes. Computed once for a base config and applied
/// per job with [`apply_key_paths`]: `update_key` without walking all of `b` every time
/// (the tests keep `update_key` itself, to check the two agree).
pub fn key_paths(key: &str, b: &Mapping) -> Vec<(Vec<Value>, Value)> {
    fn walk(key: &str, b: &Mapping, prefix: &mut Vec<Value>, into: &mut Vec<(Vec<Value>, Value)>) {
        for (name, value) in b {
            if name.as_str() == Some(key) {
                let mut path = prefix.clone();
                path.push(name.clone());
                into.push((path, value.clone()));
            } else if let Value::Mapping(inner) = value {
                prefix.push(name.clone());
                walk(key, inner, prefix, into);
                prefix.pop();
            }
        }
    }
    let mut into = Vec::new();
    walk(key, b, &mut Vec::new(), &mut into);
    into
}

/// Applies [`key_paths`] to `a`: each value lands where every mapping on its path exists
/// in `a`, as `update_key` would put it.
pub fn apply_key_paths(a: &mut Mapping, paths: &[(Vec<Value>, Value)]) {
    'paths: for (path, value) in paths {
        let (last, parents) = path.split_last().expect("a key path names its key");
        let mut target = &mut *a;
        for name in parents {
            match target.get_mut(name) {
                Some(Value::Mapping(inner)) => target = inner,
                _ => continue 'paths,
            }
        }
        target.insert(last.clone(), value.clone());
    }
}

/// A string-keyed lookup through nested mappings.
pub fn get<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_mapping()?.get(*key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// teuthology's `update_key(key, a, b)`: wherever `b` holds `key` at a path that is a
    /// mapping in `a` too, `a` takes `b`'s value.
    fn update_key(key: &str, a: &mut Mapping, b: &Mapping) {
        for (name, value) in b {
            if name.as_str() == Some(key) {
                a.insert(name.clone(), value.clone());
            } else if let Value::Mapping(inner) = value
                && let Some(Value::Mapping(target)) = a.get_mut(name)
            {
                update_key(key, target, inner);
            }
        }
    }

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn merges_as_teuthology_does() {
        let mut left = yaml("{a: 1, tasks: [x], o: {c: {d: 1}}, keep: 5}");
        deep_merge(
            &mut left,
            yaml("{tasks: [y], o: {c: {e: 2}}, a: 3, keep: null, new: null}"),
        )
        .unwrap();
        assert_eq!(
            left,
            yaml("{a: 3, tasks: [x, y], o: {c: {d: 1, e: 2}}, keep: 5, new: null}")
        );
        let error = deep_merge(&mut left, yaml("{tasks: {x: 1}}")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot merge a mapping into the list at `tasks`"
        );
    }

    #[test]
    fn key_paths_apply_as_update_key_does() {
        let b = yaml(
            "{sha1: new, overrides: {install: {ceph: {sha1: new}}, absent: {sha1: x}}, other: {sha1: y}}",
        );
        for a in [
            "{sha1: old, overrides: {install: {ceph: {sha1: old}}, other: 1}}",
            "{overrides: [1]}",
            "{other: 3}",
            "{}",
        ] {
            let (mut walked, mut applied) = (yaml(a), yaml(a));
            update_key(
                "sha1",
                walked.as_mapping_mut().unwrap(),
                b.as_mapping().unwrap(),
            );
            apply_key_paths(
                applied.as_mapping_mut().unwrap(),
                &key_paths("sha1", b.as_mapping().unwrap()),
            );
            assert_eq!(walked, applied, "{a}");
        }
    }

    #[test]
    fn a_shape_mismatch_names_its_dotted_path() {
        let mut left = yaml("{o: {p: [1]}}");
        let error = merge_ref(&mut left, &yaml("{o: {p: {q: 1}}}")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot merge a mapping into the list at `o.p`"
        );
        let mut left = yaml("{a: 1, tasks: [x]}");
        merge_ref(&mut left, &yaml("{a: 2, tasks: [y], n: null}")).unwrap();
        assert_eq!(left, yaml("{a: 2, tasks: [x, y], n: null}"));
    }

    #[test]
    fn update_key_reaches_every_level_both_sides_share() {
        let mut a = yaml("{sha1: old, overrides: {install: {ceph: {sha1: old}}, other: 1}}");
        let b = yaml("{sha1: new, overrides: {install: {ceph: {sha1: new}}, absent: {sha1: x}}}");
        update_key("sha1", a.as_mapping_mut().unwrap(), b.as_mapping().unwrap());
        assert_eq!(
            a,
            yaml("{sha1: new, overrides: {install: {ceph: {sha1: new}}, other: 1}}")
        );
    }
}
