//! The base job config every job of a suite starts from: teuthology's template, filled
//! with the run's refs and scheduling choices.

use serde_yaml::{Mapping, Value};

/// What a run pins and chooses for all its jobs.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    /// The suite name in teuthology's form (`rados:singleton`).
    pub suite: String,
    pub ceph_branch: String,
    pub ceph_sha1: String,
    pub ceph_repo: String,
    pub suite_repo: String,
    pub suite_relpath: String,
    pub suite_branch: String,
    pub suite_sha1: String,
    pub teuthology_branch: String,
    pub teuthology_sha1: String,
    pub machine_type: String,
    pub flavor: String,
    pub os_type: Option<String>,
    pub os_version: Option<String>,
    /// `-k`: `distro` (the distribution's kernel) or `None` for no kernel stanza.
    pub kernel_distro: bool,
    pub name: String,
    pub owner: String,
    pub timestamp: String,
    pub priority: i64,
    pub seed: u64,
    pub subset: Option<(u64, u64)>,
    pub email: Option<String>,
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut mapping = Mapping::new();
    for (key, value) in entries {
        mapping.insert(Value::from(key), value);
    }
    Value::Mapping(mapping)
}

fn text(s: &str) -> Value {
    Value::from(s)
}

fn debug_levels(levels: &[(&str, i64)]) -> Value {
    map(levels.iter().map(|(k, v)| (*k, Value::from(*v))).collect())
}

impl BaseConfig {
    /// The config as teuthology's suite scheduler builds it, keys in its order.
    pub fn to_value(&self) -> Value {
        let mut entries = vec![
            ("branch", text(&self.ceph_branch)),
            ("sha1", text(&self.ceph_sha1)),
            ("teuthology_branch", text(&self.teuthology_branch)),
            ("teuthology_sha1", text(&self.teuthology_sha1)),
            ("machine_type", text(&self.machine_type)),
        ];
        if let Some(os_type) = &self.os_type {
            entries.push(("os_type", text(&os_type.to_lowercase())));
        }
        if let Some(os_version) = &self.os_version {
            entries.push(("os_version", text(&os_version.to_lowercase())));
        }
        let overrides = map(vec![
            (
                "admin_socket",
                map(vec![("branch", text(&self.ceph_branch))]),
            ),
            (
                "ceph",
                map(vec![
                    (
                        "conf",
                        map(vec![
                            (
                                "mon",
                                debug_levels(&[
                                    ("debug mon", 20),
                                    ("debug ms", 1),
                                    ("debug paxos", 20),
                                ]),
                            ),
                            ("mgr", debug_levels(&[("debug mgr", 20), ("debug ms", 1)])),
                            ("osd", debug_levels(&[("debug ms", 1), ("debug osd", 20)])),
                        ]),
                    ),
                    ("flavor", text(&self.flavor)),
                    (
                        "log-ignorelist",
                        Value::Sequence(vec![
                            text(r"\(MDS_ALL_DOWN\)"),
                            text(r"\(MDS_UP_LESS_THAN_MAX\)"),
                        ]),
                    ),
                    ("sha1", text(&self.ceph_sha1)),
                ]),
            ),
            (
                "ceph-deploy",
                map(vec![(
                    "conf",
                    map(vec![
                        (
                            "client",
                            map(vec![(
                                "log file",
                                text("/var/log/ceph/ceph-$name.$pid.log"),
                            )]),
                        ),
                        ("mon", Value::Mapping(Mapping::new())),
                    ]),
                )]),
            ),
            (
                "install",
                map(vec![(
                    "ceph",
                    map(vec![
                        ("sha1", text(&self.ceph_sha1)),
                        ("flavor", text(&self.flavor)),
                    ]),
                )]),
            ),
            (
                "workunit",
                map(vec![
                    ("branch", text(&self.suite_branch)),
                    ("sha1", text(&self.suite_sha1)),
                ]),
            ),
        ]);
        entries.extend([
            ("overrides", overrides),
            ("repo", text(&self.ceph_repo)),
            ("sleep_before_teardown", Value::from(0)),
            ("suite", text(&self.suite)),
            ("suite_repo", text(&self.suite_repo)),
            ("suite_relpath", text(&self.suite_relpath)),
            ("suite_branch", text(&self.suite_branch)),
            ("suite_sha1", text(&self.suite_sha1)),
            ("tasks", Value::Sequence(Vec::new())),
        ]);
        if self.kernel_distro {
            entries.push((
                "kernel",
                map(vec![
                    ("branch", text("distro")),
                    ("kdb", Value::Bool(true)),
                    ("sha1", text("distro")),
                ]),
            ));
        }
        entries.extend([
            ("name", text(&self.name)),
            ("user", text(&self.owner)),
            ("timestamp", text(&self.timestamp)),
            ("priority", Value::from(self.priority)),
            ("seed", Value::from(self.seed)),
        ]);
        if let Some((which, of)) = self.subset {
            entries.push(("subset", text(&format!("{which}/{of}"))));
        }
        if let Some(email) = &self.email {
            entries.push(("email", text(email)));
        }
        entries.push(("owner", text(&self.owner)));
        map(entries)
    }
}
