//! `cuttle node ...`: add, list, lock, unlock and update nodes through NodeService.
//!
//! Each command validates what the user typed with cuttle-core's types first, so a typo is
//! refused with a clear message before any connection is made; only then does it call the
//! API and print the answer.

use cuttle_core::job::check_text;
use cuttle_core::{InvalidInput, JobId, MachineType, NodeCount, NodeName, Owner};
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{
    NodeAddArgs, NodeCommand, NodeImportArgs, NodeListArgs, NodeLockArgs, NodeUnlockArgs,
    NodeUpdateArgs,
};
use crate::error::Failure;
use crate::output::{self, node_fields, nodes_json, or_dash, print, print_json, table, yes_no};
use crate::schedule::default_owner;

/// Runs one `cuttle node` subcommand.
pub async fn run(context: &Context, command: NodeCommand) -> Result<(), Failure> {
    match command {
        NodeCommand::Add(args) => add(context, args).await,
        NodeCommand::List(args) => list(context, args).await,
        NodeCommand::Lock(args) => lock(context, args).await,
        NodeCommand::Unlock(args) => unlock(context, args).await,
        NodeCommand::Update(args) => update(context, args).await,
        NodeCommand::Import(args) => import(context, args).await,
    }
}

/// Validates an optional value, keeping its text.
pub(crate) fn checked<T>(
    value: Option<&str>,
    parse: fn(&str) -> Result<T, InvalidInput>,
) -> Result<Option<String>, InvalidInput> {
    value
        .map(|text| parse(text).map(|_| text.to_owned()))
        .transpose()
}

/// Validates an optional free-text value; returns it trimmed.
pub(crate) fn checked_text(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<String>, InvalidInput> {
    value.map(|text| check_text(field, text)).transpose()
}

/// Validates node names, keeping their order.
fn node_names(names: &[String]) -> Result<Vec<String>, InvalidInput> {
    names
        .iter()
        .map(|name| NodeName::parse(name).map(String::from))
        .collect()
}

/// Prints one node, as fields or JSON.
fn print_node(context: &Context, node: &v1::Node) -> Result<(), Failure> {
    if context.json {
        print_json(&output::NodeJson::from(node))
    } else {
        print(&node_fields(node))
    }
}

async fn add(context: &Context, args: NodeAddArgs) -> Result<(), Failure> {
    let request = v1::AddNodeRequest {
        name: NodeName::parse(&args.name)?.into(),
        machine_type: MachineType::parse(&args.machine_type)?.into(),
        description: checked_text("description", args.description.as_deref())?.unwrap_or_default(),
        os_type: checked_text("os type", args.os_type.as_deref())?.unwrap_or_default(),
        os_version: checked_text("os version", args.os_version.as_deref())?.unwrap_or_default(),
        ssh_key: args
            .ssh_key
            .as_deref()
            .map(cuttle_core::node::check_ssh_key)
            .transpose()?
            .unwrap_or_default(),
    };
    let api = context.connect().await?;
    let node = api
        .nodes()
        .add_node(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    print_node(context, &node)
}

/// The request for `cuttle node list`'s filters.
fn list_request(args: &NodeListArgs) -> Result<v1::ListNodesRequest, InvalidInput> {
    // clap makes each pair of flags exclusive; neither flag means no filter.
    let either = |yes: bool, no: bool| match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(v1::ListNodesRequest {
        machine_type: checked(args.machine_type.as_deref(), MachineType::parse)?,
        locked: either(args.locked, args.unlocked),
        up: either(args.up, args.down),
        locked_by: checked(args.owner.as_deref(), Owner::parse)?,
    })
}

/// Nodes as the `cuttle node list` table.
pub fn nodes_table(nodes: &[v1::Node]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|node| {
            vec![
                node.name.clone(),
                node.machine_type.clone(),
                yes_no(node.up),
                node.locked_by.clone(),
                or_dash(node.locked_job_id),
                node.description.clone(),
            ]
        })
        .collect();
    table(
        &["name", "type", "up", "locked by", "job", "description"],
        &rows,
    )
}

async fn list(context: &Context, args: NodeListArgs) -> Result<(), Failure> {
    let request = list_request(&args)?;
    let api = context.connect().await?;
    let nodes = api
        .nodes()
        .list_nodes(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner()
        .nodes;
    if context.json {
        print_json(&nodes_json(&nodes))
    } else {
        print(&nodes_table(&nodes))
    }
}

/// What `cuttle node lock` asks for: free nodes of a type, or named nodes.
#[derive(Debug)]
enum LockRequest {
    ByType(v1::LockNodesRequest),
    Named(v1::LockNamedNodesRequest),
}

/// `--owner` validated, else `default_owner` (see [`default_owner`]; empty: the token's
/// user).
fn owner_or(flag: Option<&str>, default_owner: &str) -> Result<String, InvalidInput> {
    match flag {
        Some(owner) => Ok(Owner::parse(owner)?.into()),
        None => Ok(default_owner.to_owned()),
    }
}

/// Builds the lock request, for `default_owner` when `--owner` is absent.
fn lock_request(args: &NodeLockArgs, default_owner: &str) -> Result<LockRequest, InvalidInput> {
    let owner = owner_or(args.owner.as_deref(), default_owner)?;
    let job_id = args
        .job_id
        .as_deref()
        .map(JobId::parse)
        .transpose()?
        .map(|id| id.0);
    // clap guarantees exactly one of names or --machine-type (which brings --count).
    match (&args.machine_type, args.count) {
        (Some(machine_type), Some(count)) => Ok(LockRequest::ByType(v1::LockNodesRequest {
            machine_type: MachineType::parse(machine_type)?.into(),
            count: NodeCount::new(count)?.get(),
            owner,
            job_id,
            dispatcher: None,
        })),
        _ => Ok(LockRequest::Named(v1::LockNamedNodesRequest {
            names: node_names(&args.names)?,
            owner,
            job_id,
            dispatcher: None,
        })),
    }
}

async fn lock(context: &Context, args: NodeLockArgs) -> Result<(), Failure> {
    // Checked before connecting, so bad input is reported even when the API is down.
    lock_request(&args, "")?;
    let api = context.connect().await?;
    let default = match args.owner {
        Some(_) => String::new(),
        None => default_owner(&api, std::env::var("USER").ok().as_deref()).await?,
    };
    let request = lock_request(&args, &default)?;
    let mut client = api.nodes();
    let answer = match request {
        LockRequest::ByType(request) => client.lock_nodes(request).await,
        LockRequest::Named(request) => client.lock_named_nodes(request).await,
    };
    let nodes = answer
        .map_err(|status| api.failure(status))?
        .into_inner()
        .nodes;
    if context.json {
        print_json(&nodes_json(&nodes))
    } else {
        let names: Vec<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
        print(&names.join("\n"))
    }
}

/// What `cuttle node unlock --json` prints.
#[derive(Debug, Serialize)]
struct UnlockJson<'a> {
    unlocked: &'a [String],
    already_unlocked: &'a [String],
}

/// `unlocked NAME` and `already unlocked NAME` lines.
fn unlock_lines(answer: &v1::UnlockNodesResponse) -> String {
    let unlocked = answer
        .unlocked
        .iter()
        .map(|name| format!("unlocked {name}"));
    let already = answer
        .already_unlocked
        .iter()
        .map(|name| format!("already unlocked {name}"));
    unlocked.chain(already).collect::<Vec<_>>().join("\n")
}

async fn unlock(context: &Context, args: NodeUnlockArgs) -> Result<(), Failure> {
    let mut request = v1::UnlockNodesRequest {
        names: node_names(&args.names)?,
        owner: owner_or(args.owner.as_deref(), "")?,
        job_id: None,
    };
    let api = context.connect().await?;
    if args.owner.is_none() {
        request.owner = default_owner(&api, std::env::var("USER").ok().as_deref()).await?;
    }
    let answer = api
        .nodes()
        .unlock_nodes(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&UnlockJson {
            unlocked: &answer.unlocked,
            already_unlocked: &answer.already_unlocked,
        })
    } else {
        print(&unlock_lines(&answer))
    }
}

/// The requests for `cuttle node update`: the descriptive change (when any field was
/// given) and the up/down mark (when `--up` or `--down` was given).
fn update_requests(
    args: &NodeUpdateArgs,
) -> Result<(Option<v1::UpdateNodeRequest>, Option<v1::MarkNodeRequest>), InvalidInput> {
    let name: String = NodeName::parse(&args.name)?.into();
    let update = v1::UpdateNodeRequest {
        name: name.clone(),
        machine_type: checked(args.machine_type.as_deref(), MachineType::parse)?,
        description: checked_text("description", args.description.as_deref())?,
        os_type: checked_text("os type", args.os_type.as_deref())?,
        os_version: checked_text("os version", args.os_version.as_deref())?,
        ssh_key: args
            .ssh_key
            .as_deref()
            .map(cuttle_core::node::check_ssh_key)
            .transpose()?,
    };
    let changes_fields = update.machine_type.is_some()
        || update.description.is_some()
        || update.os_type.is_some()
        || update.os_version.is_some()
        || update.ssh_key.is_some();
    let mark = if args.up || args.down {
        let reason = checked_text("reason", args.reason.as_deref())?.unwrap_or_default();
        if args.down && reason.is_empty() {
            return Err(InvalidInput::new(
                "reason",
                "marking a node down needs a reason; say why with --reason",
            ));
        }
        Some(v1::MarkNodeRequest {
            name,
            up: args.up,
            reason,
            job_id: None,
        })
    } else {
        None
    };
    Ok((changes_fields.then_some(update), mark))
}

async fn update(context: &Context, args: NodeUpdateArgs) -> Result<(), Failure> {
    let (update, mark) = update_requests(&args)?;
    let api = context.connect().await?;
    let mut client = api.nodes();
    let mut node = None;
    if let Some(request) = update {
        let answer = client.update_node(request).await;
        node = Some(answer.map_err(|status| api.failure(status))?.into_inner());
    }
    if let Some(request) = mark {
        let answer = client.mark_node(request).await;
        node = Some(answer.map_err(|status| api.failure(status))?.into_inner());
    }
    match node {
        Some(node) => print_node(context, &node),
        // clap requires at least one change, so one of the calls above was made.
        None => Err(Failure::Invalid(
            "nothing to update; give a field to change or --up / --down".to_owned(),
        )),
    }
}

/// One node of paddles' JSON, as cuttle adds it.
#[derive(Debug, PartialEq)]
struct PaddlesNode {
    add: v1::AddNodeRequest,
    up: bool,
    locked_by: Option<String>,
}

/// Reads paddles' `GET /nodes/` answer; each entry checked as `cuttle node add` would.
fn paddles_nodes(text: &str) -> Result<Vec<Result<PaddlesNode, String>>, Failure> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Failure::Invalid(format!("the file is not paddles' JSON list of nodes: {e}"))
    })?;
    let entries = value.as_array().ok_or_else(|| {
        Failure::Invalid("the file is not a JSON list; save paddles' GET /nodes/ answer".into())
    })?;
    Ok(entries
        .iter()
        .map(|entry| {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let name = text("name");
            let checked = || -> Result<PaddlesNode, InvalidInput> {
                let ssh_key = match text("ssh_pub_key") {
                    key if key.is_empty() => String::new(),
                    key => cuttle_core::node::check_ssh_key(&key)?,
                };
                Ok(PaddlesNode {
                    add: v1::AddNodeRequest {
                        name: NodeName::parse(&name)?.into(),
                        machine_type: MachineType::parse(&text("machine_type"))?.into(),
                        description: checked_text("description", Some(&text("description")))?
                            .unwrap_or_default(),
                        os_type: checked_text("os type", Some(&text("os_type")))?
                            .unwrap_or_default(),
                        os_version: checked_text("os version", Some(&text("os_version")))?
                            .unwrap_or_default(),
                        ssh_key,
                    },
                    up: entry.get("up").and_then(|v| v.as_bool()).unwrap_or(true),
                    locked_by: entry
                        .get("locked")
                        .and_then(|v| v.as_bool())
                        .filter(|locked| *locked)
                        .map(|_| text("locked_by")),
                })
            };
            checked()
                .map_err(|e| format!("{}: {e}", if name.is_empty() { "(no name)" } else { &name }))
        })
        .collect())
}

async fn import(context: &Context, args: NodeImportArgs) -> Result<(), Failure> {
    let text = if args.file == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::Invalid(format!("cannot read standard input: {e}")))?
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| Failure::Invalid(format!("cannot read {}: {e}", args.file)))?
    };
    let only = args
        .machine_type
        .as_deref()
        .map(MachineType::parse)
        .transpose()?;
    let nodes = paddles_nodes(&text)?;
    let api = context.connect().await?;
    let mut client = api.nodes();
    let (mut added, mut present, mut failed) = (0, 0, 0);
    let mut lines = Vec::new();
    for node in nodes {
        let node = match node {
            Ok(node) => node,
            Err(why) => {
                failed += 1;
                lines.push(format!("skipped {why}"));
                continue;
            }
        };
        if only
            .as_ref()
            .is_some_and(|t| t.as_str() != node.add.machine_type)
        {
            continue;
        }
        let name = node.add.name.clone();
        match client.add_node(node.add).await {
            Ok(_) => {
                added += 1;
                let mut line = format!("added {name}");
                if !node.up {
                    let marked = client
                        .mark_node(v1::MarkNodeRequest {
                            name: name.clone(),
                            up: false,
                            reason: "down in paddles".into(),
                            job_id: None,
                        })
                        .await;
                    match marked {
                        Ok(_) => line.push_str(" (down, as in paddles)"),
                        Err(status) => {
                            failed += 1;
                            line.push_str(&format!(
                                " but could not mark it down: {}",
                                status.message()
                            ));
                        }
                    }
                }
                if let Some(holder) = node.locked_by {
                    line.push_str(&format!(" (locked by {holder} in paddles; not imported)"));
                }
                lines.push(line);
            }
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                present += 1;
                lines.push(format!("{name} is already in cuttle; left as it is"));
            }
            Err(status) => {
                failed += 1;
                lines.push(format!("could not add {name}: {}", status.message()));
            }
        }
    }
    lines.push(format!(
        "{added} added, {present} already there, {failed} failed"
    ));
    if context.json {
        print_json(
            &serde_json::json!({ "added": added, "already_there": present, "failed": failed, "lines": lines }),
        )?;
    } else {
        print(&lines.join("\n"))?;
    }
    if failed > 0 {
        return Err(Failure::Invalid(format!(
            "{failed} node(s) of the file could not be imported; see above"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn paddles_json_becomes_node_requests() {
        let json = r#"[
            {"name": "smithi001.front.sepia.ceph.com", "machine_type": "smithi", "up": true, "locked": true, "locked_by": "alice@laptop", "description": "/a/run/1", "os_type": "ubuntu", "os_version": "22.04", "ssh_pub_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "is_vm": false, "arch": "x86_64"},
            {"name": "smithi002", "machine_type": "smithi", "up": false, "locked": false, "locked_by": null, "description": null, "os_type": null, "os_version": null, "ssh_pub_key": null},
            {"name": "bad name!", "machine_type": "smithi"}
        ]"#;
        let nodes = paddles_nodes(json).unwrap();
        let first = nodes[0].as_ref().unwrap();
        assert_eq!(first.add.name, "smithi001.front.sepia.ceph.com");
        assert!(first.add.ssh_key.starts_with("ssh-ed25519 "));
        assert_eq!(first.locked_by.as_deref(), Some("alice@laptop"));
        let second = nodes[1].as_ref().unwrap();
        assert!(!second.up && second.add.ssh_key.is_empty() && second.add.os_type.is_empty());
        assert!(nodes[2].as_ref().unwrap_err().starts_with("bad name!"));
        assert!(paddles_nodes("{}").is_err());
    }
    use clap::Parser;

    fn node_command(args: &[&str]) -> NodeCommand {
        let cli =
            Cli::try_parse_from(std::iter::once("cuttle").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Node(command) => command,
            other => panic!("not a node command: {other:?}"),
        }
    }

    #[test]
    fn lock_by_type_validates_the_count() {
        let NodeCommand::Lock(args) = node_command(&[
            "node",
            "lock",
            "--machine-type",
            "smithi",
            "--count",
            "0",
            "--owner",
            "alice",
        ]) else {
            panic!()
        };
        let error = lock_request(&args, "").unwrap_err();
        assert_eq!(error.field, "node count");
    }

    #[test]
    fn lock_by_name_builds_a_named_request() {
        let NodeCommand::Lock(args) = node_command(&[
            "node",
            "lock",
            "smithi001",
            "smithi002",
            "--owner",
            "alice",
            "--job-id",
            "42",
        ]) else {
            panic!()
        };
        match lock_request(&args, "carol").unwrap() {
            LockRequest::Named(request) => {
                assert_eq!(request.names, ["smithi001", "smithi002"]);
                assert_eq!(request.owner, "alice");
                assert_eq!(request.job_id, Some(42));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lock_owner_defaults_to_the_default_owner_and_takes_short_flags() {
        let NodeCommand::Lock(args) =
            node_command(&["node", "lock", "-m", "smithi", "--count", "2", "-j", "7"])
        else {
            panic!()
        };
        match lock_request(&args, "carol").unwrap() {
            LockRequest::ByType(request) => {
                assert_eq!(request.machine_type, "smithi");
                assert_eq!(request.owner, "carol", "no --owner: the default owner");
                assert_eq!(request.job_id, Some(7));
            }
            other => panic!("{other:?}"),
        }
        // Empty: cuttle-api uses the token's user.
        match lock_request(&args, "").unwrap() {
            LockRequest::ByType(request) => assert_eq!(request.owner, ""),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_sends_only_what_was_given() {
        let NodeCommand::Update(args) = node_command(&[
            "node",
            "update",
            "smithi001",
            "--down",
            "--reason",
            "bad disk",
        ]) else {
            panic!()
        };
        let (update, mark) = update_requests(&args).unwrap();
        assert!(update.is_none());
        let mark = mark.unwrap();
        assert!(!mark.up);
        assert_eq!(mark.reason, "bad disk");

        let NodeCommand::Update(args) =
            node_command(&["node", "update", "smithi001", "--description", "rack 2"])
        else {
            panic!()
        };
        let (update, mark) = update_requests(&args).unwrap();
        assert_eq!(update.unwrap().description.as_deref(), Some("rack 2"));
        assert!(mark.is_none());
    }

    #[test]
    fn list_filters_map_to_optional_booleans() {
        let NodeCommand::List(args) =
            node_command(&["node", "list", "--unlocked", "--up", "--owner", "bob"])
        else {
            panic!()
        };
        let request = list_request(&args).unwrap();
        assert_eq!(request.locked, Some(false));
        assert_eq!(request.up, Some(true));
        assert_eq!(request.locked_by.as_deref(), Some("bob"));
        assert_eq!(request.machine_type, None);
    }

    #[test]
    fn unlock_lines_say_what_changed() {
        let answer = v1::UnlockNodesResponse {
            unlocked: vec!["a".into()],
            already_unlocked: vec!["b".into()],
        };
        assert_eq!(unlock_lines(&answer), "unlocked a\nalready unlocked b");
    }

    #[test]
    fn nodes_table_has_the_contract_columns() {
        let node = v1::Node {
            name: "smithi001".into(),
            machine_type: "smithi".into(),
            up: true,
            locked: true,
            locked_by: "alice".into(),
            locked_job_id: Some(3),
            ..Default::default()
        };
        let text = nodes_table(&[node]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["NAME", "TYPE", "UP", "LOCKED", "BY", "JOB", "DESCRIPTION"]
        );
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["smithi001", "smithi", "yes", "alice", "3", "-"]
        );
    }
}
