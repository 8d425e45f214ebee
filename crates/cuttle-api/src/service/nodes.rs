//! NodeService: inventory, up/down, and all-or-nothing locks.

use std::collections::HashSet;

use tonic::{Request, Response, Status};

use cuttle_core::auth::{Action, Caller};
use cuttle_core::node::{Unlocker, check_down_reason};
use cuttle_core::{
    InvalidInput, JobId, JobStatus, LockRequest, MachineType, NodeCount, NodeName, Owner,
};
use cuttle_db::{NewNode, NodeChanges, NodeFilter};
use cuttle_proto::convert::node_to_proto;
use cuttle_proto::v1::node_service_server::NodeService;
use cuttle_proto::v1::{
    AddNodeRequest, ListNodesRequest, ListNodesResponse, LockNamedNodesRequest, LockNodesRequest,
    LockNodesResponse, MarkNodeRequest, Node, UnlockNodesRequest, UnlockNodesResponse,
    UpdateNodeRequest,
};

use super::{job_id, optional, required, text};
use crate::{App, errors, now, observe};

#[derive(Debug)]
pub struct NodeApi {
    app: App,
}

impl NodeApi {
    pub fn new(app: App) -> NodeApi {
        NodeApi { app }
    }
}

fn node_name(name: &str) -> Result<NodeName, Status> {
    required(
        name,
        "node name",
        "give the node's host name",
        NodeName::parse,
    )
}

fn owner(name: &str) -> Result<Owner, Status> {
    required(
        name,
        "owner",
        "say who holds the nodes (--owner)",
        Owner::parse,
    )
}

/// Most nodes one lock or unlock may name.
const MAX_NAMES: usize = 1000;

/// Parses a list of node names, refusing an empty list and duplicates.
fn node_names(names: &[String]) -> Result<Vec<NodeName>, Status> {
    if names.is_empty() {
        return Err(errors::invalid(InvalidInput::new(
            "node names",
            "name at least one node",
        )));
    }
    // One statement binds every name: keep it far below the databases' parameter limits.
    if names.len() > MAX_NAMES {
        return Err(errors::invalid(InvalidInput::new(
            "node names",
            format!(
                "{} names in one request is too many; at most {MAX_NAMES}",
                names.len()
            ),
        )));
    }
    let mut seen = HashSet::new();
    names
        .iter()
        .map(|name| {
            let parsed = node_name(name)?;
            if !seen.insert(parsed.clone()) {
                return Err(errors::invalid(InvalidInput::new(
                    "node names",
                    format!("{parsed} is listed twice"),
                )));
            }
            Ok(parsed)
        })
        .collect()
}

fn nodes_response(nodes: Vec<cuttle_core::Node>) -> LockNodesResponse {
    LockNodesResponse {
        nodes: nodes.iter().map(node_to_proto).collect(),
    }
}

/// The person a hand lock or unlock is for: `--owner` when given, else the token's user.
fn person(caller: &Caller, given: &str) -> Result<Owner, Status> {
    match (given.trim(), caller.user()) {
        ("", Some(user)) => Ok(user.clone()),
        (given, _) => owner(given),
    }
}

impl NodeApi {
    /// Who a lock is for, once the caller may take it. A lock for a job is a
    /// dispatcher's: service (or admin) only, for a job that is waiting and claimed by
    /// the dispatcher that asks; it is held in the job owner's name. A lock by hand is a
    /// person's, for themselves (an admin for anyone).
    async fn lock_owner(
        &self,
        caller: &Caller,
        given: &str,
        job_id: Option<JobId>,
        dispatcher: Option<&str>,
    ) -> Result<Owner, Status> {
        let Some(job_id) = job_id else {
            let owner = person(caller, given)?;
            self.app.check(caller, Action::HandLock { owner: &owner })?;
            return Ok(owner);
        };
        self.app.check(caller, Action::Service)?;
        let (job, _) = self.app.db(move |store| store.get_job(job_id)).await?;
        if !caller.is_admin() {
            let claimed_by_asker = job.status == JobStatus::Waiting
                && dispatcher.is_some_and(|asker| job.dispatcher.as_deref() == Some(asker));
            if !claimed_by_asker {
                return Err(Status::permission_denied(format!(
                    "job {job_id} is {} and not claimed by dispatcher {}; a service token locks nodes only for a job its dispatcher has claimed",
                    job.status,
                    dispatcher.unwrap_or("(none named)")
                )));
            }
        }
        Ok(job.owner)
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<Node>, Status> {
        observe("NodeService/AddNode", async {
            self.app
                .authorize(request.metadata(), Action::AdministerLab)
                .await?;
            let request = request.into_inner();
            let node = NewNode {
                name: node_name(&request.name)?,
                machine_type: required(
                    &request.machine_type,
                    "machine type",
                    "give one with --machine-type",
                    MachineType::parse,
                )?,
                description: text("description", &request.description)?,
                os_type: text("os type", &request.os_type)?,
                os_version: text("os version", &request.os_version)?,
                ssh_key: cuttle_core::node::check_ssh_key(&request.ssh_key)
                    .map_err(errors::invalid)?,
            };
            let added = self
                .app
                .db(move |store| store.add_node(&node, now()))
                .await?;
            self.app.events().send(
                Some(added.machine_type.clone()),
                crate::events::Kind::NodeUp,
                1,
            );
            Ok(node_to_proto(&added))
        })
        .await
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        observe("NodeService/UpdateNode", async {
            self.app
                .authorize(request.metadata(), Action::AdministerLab)
                .await?;
            let request = request.into_inner();
            let name = node_name(&request.name)?;
            let changes = NodeChanges {
                machine_type: optional(request.machine_type.as_deref(), MachineType::parse)?,
                description: request
                    .description
                    .as_deref()
                    .map(|d| text("description", d))
                    .transpose()?,
                os_type: request
                    .os_type
                    .as_deref()
                    .map(|d| text("os type", d))
                    .transpose()?,
                os_version: request
                    .os_version
                    .as_deref()
                    .map(|d| text("os version", d))
                    .transpose()?,
                ssh_key: request
                    .ssh_key
                    .as_deref()
                    .map(cuttle_core::node::check_ssh_key)
                    .transpose()
                    .map_err(errors::invalid)?,
            };
            let node = self
                .app
                .db(move |store| store.update_node(&name, &changes, now()))
                .await?;
            Ok(node_to_proto(&node))
        })
        .await
    }

    async fn mark_node(&self, request: Request<MarkNodeRequest>) -> Result<Response<Node>, Status> {
        observe("NodeService/MarkNode", async {
            // Taking a node out of service is also a supervisor's job (its nuke failed);
            // putting one back is an admin's.
            let action = if request.get_ref().up {
                Action::AdministerLab
            } else {
                Action::MarkNodeDown
            };
            let caller = self.app.authorize(request.metadata(), action).await?;
            let request = request.into_inner();
            let name = node_name(&request.name)?;
            // A supervisor marks down only a node of its own job.
            if !request.up && !caller.is_admin() {
                let Some(job) = request.job_id else {
                    return Err(Status::permission_denied(
                        "a service marks a node down only for the job that holds it; name the job (job_id)",
                    ));
                };
                let job = job_id(job)?;
                let lookup = name.clone();
                let node = self.app.db(move |store| store.get_node(&lookup)).await?;
                if node.lock.as_ref().and_then(|lock| lock.job_id) != Some(job) {
                    return Err(Status::failed_precondition(format!(
                        "node {name} is not locked for job {job}; a supervisor marks down only its own job's nodes"
                    )));
                }
            }
            let reason = if request.up {
                Some(text("reason", &request.reason)?).filter(|r| !r.is_empty())
            } else {
                Some(check_down_reason(&request.reason).map_err(errors::invalid)?)
            };
            let up = request.up;
            let node = self
                .app
                .db(move |store| store.mark_node(&name, up, reason.as_deref(), now()))
                .await?;
            if node.up {
                self.app.events().send(
                    Some(node.machine_type.clone()),
                    crate::events::Kind::NodeUp,
                    1,
                );
            }
            Ok(node_to_proto(&node))
        })
        .await
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        observe("NodeService/ListNodes", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let request = request.into_inner();
            let filter = NodeFilter {
                machine_type: optional(request.machine_type.as_deref(), MachineType::parse)?,
                locked: request.locked,
                up: request.up,
                locked_by: optional(request.locked_by.as_deref(), Owner::parse)?,
            };
            let nodes = self.app.db(move |store| store.list_nodes(&filter)).await?;
            Ok(ListNodesResponse {
                nodes: nodes.iter().map(node_to_proto).collect(),
            })
        })
        .await
    }

    async fn lock_nodes(
        &self,
        request: Request<LockNodesRequest>,
    ) -> Result<Response<LockNodesResponse>, Status> {
        observe("NodeService/LockNodes", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let job_id = request.job_id.map(job_id).transpose()?;
            let owner = self
                .lock_owner(
                    &caller,
                    &request.owner,
                    job_id,
                    request.dispatcher.as_deref(),
                )
                .await?;
            let lock = LockRequest {
                machine_type: required(
                    &request.machine_type,
                    "machine type",
                    "say which machine type to lock (--machine-type)",
                    MachineType::parse,
                )?,
                count: NodeCount::new(request.count.into()).map_err(errors::invalid)?,
                owner,
                job_id,
            };
            let nodes = self
                .app
                .db(move |store| store.lock_nodes(&lock, now()))
                .await?;
            Ok(nodes_response(nodes))
        })
        .await
    }

    async fn lock_named_nodes(
        &self,
        request: Request<LockNamedNodesRequest>,
    ) -> Result<Response<LockNodesResponse>, Status> {
        observe("NodeService/LockNamedNodes", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let names = node_names(&request.names)?;
            let job_id = request.job_id.map(job_id).transpose()?;
            let owner = self
                .lock_owner(
                    &caller,
                    &request.owner,
                    job_id,
                    request.dispatcher.as_deref(),
                )
                .await?;
            let nodes = self
                .app
                .db(move |store| store.lock_named_nodes(&names, &owner, job_id, now()))
                .await?;
            Ok(nodes_response(nodes))
        })
        .await
    }

    async fn unlock_nodes(
        &self,
        request: Request<UnlockNodesRequest>,
    ) -> Result<Response<UnlockNodesResponse>, Status> {
        observe("NodeService/UnlockNodes", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let names = node_names(&request.names)?;
            let unlocker = match request.job_id {
                // A job's release: its supervisor's (or the release-only one's) work.
                Some(id) => {
                    self.app.check(&caller, Action::Service)?;
                    Unlocker::JobRelease {
                        job_id: job_id(id)?,
                    }
                }
                None => {
                    let owner = person(&caller, &request.owner)?;
                    self.app
                        .check(&caller, Action::HandLock { owner: &owner })?;
                    Unlocker::Person {
                        owner,
                        is_admin: caller.is_admin(),
                    }
                }
            };
            let grace_ms = self.app.settings().supervisor_grace_ms();
            let outcome = self
                .app
                .db(move |store| store.unlock_nodes(&names, &unlocker, grace_ms, now()))
                .await?;
            for machine_type in &outcome.machine_types {
                self.app.events().send(
                    Some(machine_type.clone()),
                    crate::events::Kind::NodesFreed,
                    outcome.unlocked.len(),
                );
            }
            Ok(UnlockNodesResponse {
                unlocked: outcome.unlocked.iter().map(ToString::to_string).collect(),
                already_unlocked: outcome
                    .already_unlocked
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            })
        })
        .await
    }
}
