//! NodeService: inventory, up/down, and all-or-nothing locks.

use std::collections::HashSet;

use tonic::{Request, Response, Status};

use cuttle_core::node::check_down_reason;
use cuttle_core::{InvalidInput, LockRequest, MachineType, NodeCount, NodeName, Owner};
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

/// Parses a list of node names, refusing an empty list and duplicates.
fn node_names(names: &[String]) -> Result<Vec<NodeName>, Status> {
    if names.is_empty() {
        return Err(errors::invalid(InvalidInput::new(
            "node names",
            "name at least one node",
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

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<Node>, Status> {
        observe("NodeService/AddNode", async {
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
            };
            let added = self
                .app
                .db(move |store| store.add_node(&node, now()))
                .await?;
            Ok(node_to_proto(&added))
        })
        .await
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        observe("NodeService/UpdateNode", async {
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
            let request = request.into_inner();
            let name = node_name(&request.name)?;
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
            Ok(node_to_proto(&node))
        })
        .await
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        observe("NodeService/ListNodes", async {
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
            let request = request.into_inner();
            let lock = LockRequest {
                machine_type: required(
                    &request.machine_type,
                    "machine type",
                    "say which machine type to lock (--machine-type)",
                    MachineType::parse,
                )?,
                count: NodeCount::new(request.count.into()).map_err(errors::invalid)?,
                owner: owner(&request.owner)?,
                job_id: request.job_id.map(job_id).transpose()?,
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
            let request = request.into_inner();
            let names = node_names(&request.names)?;
            let owner = owner(&request.owner)?;
            let job_id = request.job_id.map(job_id).transpose()?;
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
            let is_admin = self.app.admin().is_admin(request.metadata());
            let request = request.into_inner();
            let names = node_names(&request.names)?;
            let owner = owner(&request.owner)?;
            let outcome = self
                .app
                .db(move |store| store.unlock_nodes(&names, &owner, is_admin, now()))
                .await?;
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
