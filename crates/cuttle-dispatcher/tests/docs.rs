//! The operator guide's configuration tables and the shipped example configs against the
//! config structs: every key either daemon accepts is documented, with a row of its own,
//! and no row names a key that no longer exists.

use std::collections::BTreeSet;
use std::path::Path;

use cuttle_runtime::config::keys;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the guide from the heading `from` to the next heading `until`.
fn section<'a>(text: &'a str, from: &str, until: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in the operator guide"));
    let rest = &text[start..];
    let end = rest.find(until).unwrap_or(rest.len());
    &rest[..end]
}

/// The keys a table's rows name in their first cell (`key`, `[lab] key`, or several
/// keys separated by commas); rows whose first cell is anything else (messages, log
/// lines, headers) are not key rows.
fn documented(section: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cell = line.split('|').nth(1).unwrap_or("").trim();
        let names: Vec<&str> = cell.split(',').map(str::trim).collect();
        let keys: Option<Vec<String>> = names
            .iter()
            .map(|name| {
                let name = name.strip_prefix('`')?.strip_suffix('`')?;
                let name = name.strip_prefix("[lab] ").unwrap_or(name);
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    .then(|| name.to_owned())
            })
            .collect();
        if let Some(keys) = keys {
            found.extend(keys);
        }
    }
    found
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn every_cuttle_api_key_has_a_row_and_every_row_a_key() {
    let guide = read("docs/operator-guide.md");
    let rows = documented(section(&guide, "### cuttle-api", "### cuttle-dispatcher"));
    let accepted = set(keys::<cuttle_api::settings::FileConfig>());
    assert!(accepted.len() > 30, "{accepted:?}");
    let missing: Vec<_> = accepted.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&accepted).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "cuttle-api keys without a row in docs/operator-guide.md: {missing:?}; rows naming no key: {stale:?}"
    );
}

#[test]
fn every_dispatcher_and_lab_key_has_a_row_and_every_row_a_key() {
    let guide = read("docs/operator-guide.md");
    let rows = documented(section(&guide, "### cuttle-dispatcher", "\n## "));
    let mut accepted = set(keys::<cuttle_dispatcher::FileConfig>());
    accepted.remove("lab");
    accepted.extend(set(keys::<cuttle_runtime::lab::LabConfig>()));
    assert!(accepted.len() > 25, "{accepted:?}");
    let missing: Vec<_> = accepted.difference(&rows).collect();
    let stale: Vec<_> = rows.difference(&accepted).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "dispatcher keys without a row in docs/operator-guide.md: {missing:?}; rows naming no key: {stale:?}"
    );
}

#[test]
fn the_example_configs_mention_every_key() {
    for (file, accepted) in [
        (
            "deploy/cuttle-api.toml",
            set(keys::<cuttle_api::settings::FileConfig>()),
        ),
        ("deploy/cuttle-dispatcher.toml", {
            let mut keys = set(keys::<cuttle_dispatcher::FileConfig>());
            keys.remove("lab");
            keys.extend(set(cuttle_runtime::config::keys::<
                cuttle_runtime::lab::LabConfig,
            >()));
            keys
        }),
    ] {
        let text = read(file);
        let missing: Vec<&String> = accepted
            .iter()
            .filter(|key| {
                !text.lines().any(|line| {
                    let line = line.trim_start_matches(['#', ' ']);
                    line.starts_with(&format!("{key} ="))
                        || line.starts_with("[lab]") && *key == "lab"
                })
            })
            .collect();
        assert!(missing.is_empty(), "{file} does not show {missing:?}");
    }
}

/// The crate graph in docs/architecture.md is the workspace's: every crate has its line,
/// and each line names exactly the cuttle crates its Cargo.toml depends on.
#[test]
fn the_architecture_pages_crate_graph_is_the_workspaces() {
    let page = read("docs/architecture.md");
    let graph = section(&page, "## Crate graph", "## Code map");
    let block = graph
        .split("```")
        .nth(1)
        .expect("a code block under ## Crate graph");
    let mut documented = std::collections::BTreeMap::new();
    for line in block.lines().filter(|l| l.starts_with("cuttle-")) {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        let deps: BTreeSet<String> = match line.split_once('→') {
            Some((_, rest)) => rest
                .split("  ")
                .next()
                .unwrap_or("")
                .split(',')
                .map(|dep| format!("cuttle-{}", dep.trim()))
                .collect(),
            None => BTreeSet::new(),
        };
        documented.insert(name, deps);
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut actual = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut in_dependencies = false;
        let mut deps = BTreeSet::new();
        for line in manifest.lines() {
            if line.starts_with('[') {
                in_dependencies = line == "[dependencies]";
            } else if in_dependencies && line.starts_with("cuttle-") {
                deps.insert(line.split(['.', ' ', '=']).next().unwrap().to_owned());
            }
        }
        actual.insert(name, deps);
    }
    assert!(actual.len() >= 15, "{actual:?}");
    assert_eq!(
        documented, actual,
        "docs/architecture.md's crate graph (left) is not the workspace's (right)"
    );
}
