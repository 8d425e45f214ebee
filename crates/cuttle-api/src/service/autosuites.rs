//! AutoSuiteService: suite requests waiting for their build, each visible to its owner
//! and to admins only, as presets are.

use tonic::{Request, Response, Status};

use cuttle_core::auth::{Caller, Role};
use cuttle_core::autosuite::AutoSuite;
use cuttle_proto::convert::autosuite_to_proto;
use cuttle_proto::v1::auto_suite_service_server::AutoSuiteService;
use cuttle_proto::v1::{
    self, AddAutoSuiteRequest, DeleteAutoSuiteRequest, DeleteAutoSuiteResponse,
    EditAutoSuiteRequest, GetAutoSuiteRequest, ListAutoSuitesRequest, ListAutoSuitesResponse,
};

use super::optional;
use super::suites::with_preset;
use crate::{App, errors, now, observe};

#[derive(Debug)]
pub struct AutoSuiteApi {
    app: App,
}

impl AutoSuiteApi {
    pub fn new(app: App) -> AutoSuiteApi {
        AutoSuiteApi { app }
    }

    /// `id` with its timeline, if `caller` may see it.
    async fn visible(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<(AutoSuite, Vec<cuttle_core::autosuite::AutoSuiteEvent>), Status> {
        let Caller::User { user, role } = caller else {
            return Err(unauthenticated());
        };
        let found = self.app.db(move |store| store.get_autosuite(id)).await;
        let admin = *role == Role::Admin;
        match found {
            Ok((autosuite, events)) if admin || &autosuite.owner == user => Ok((autosuite, events)),
            Ok((autosuite, _)) => Err(Status::permission_denied(format!(
                "autosuite {id} is {}'s; {user} sees and changes only their own (an admin, all); see yours with `cuttle autosuite list`",
                autosuite.owner
            ))),
            Err(status) => Err(status),
        }
    }
}

fn unauthenticated() -> Status {
    Status::unauthenticated(
        "AutoSuites belong to someone: send your token (--token, CUTTLE_TOKEN or ~/.config/cuttle/token)",
    )
}

#[tonic::async_trait]
impl AutoSuiteService for AutoSuiteApi {
    async fn add_auto_suite(
        &self,
        request: Request<AddAutoSuiteRequest>,
    ) -> Result<Response<v1::AutoSuite>, Status> {
        observe("AutoSuiteService/AddAutoSuite", async {
            let caller = self.app.caller(request.metadata()).await?;
            if caller == Caller::Anonymous {
                return Err(unauthenticated());
            }
            let args = request.into_inner().args.unwrap_or_default();
            let raw = with_preset(&self.app, &caller, args).await?;
            let added = crate::autosuites::add(&self.app, &caller, raw).await?;
            let id = added.id;
            let (autosuite, events) = self.app.db(move |store| store.get_autosuite(id)).await?;
            Ok(autosuite_to_proto(autosuite, events))
        })
        .await
    }

    async fn get_auto_suite(
        &self,
        request: Request<GetAutoSuiteRequest>,
    ) -> Result<Response<v1::AutoSuite>, Status> {
        observe("AutoSuiteService/GetAutoSuite", async {
            let caller = self.app.caller(request.metadata()).await?;
            let (autosuite, events) = self.visible(&caller, request.into_inner().id).await?;
            Ok(autosuite_to_proto(autosuite, events))
        })
        .await
    }

    async fn list_auto_suites(
        &self,
        request: Request<ListAutoSuitesRequest>,
    ) -> Result<Response<ListAutoSuitesResponse>, Status> {
        observe("AutoSuiteService/ListAutoSuites", async {
            let caller = self.app.caller(request.metadata()).await?;
            let Caller::User { user, role } = &caller else {
                return Err(unauthenticated());
            };
            let request = request.into_inner();
            let named = optional(Some(&request.owner), cuttle_core::Owner::parse)?;
            let owner = if request.all {
                None
            } else {
                Some(named.unwrap_or_else(|| user.clone()))
            };
            if owner.as_ref() != Some(user) && *role != Role::Admin {
                return Err(Status::permission_denied(format!(
                    "{user} may list only their own AutoSuites (an admin may list anyone's); drop --owner and --all"
                )));
            }
            let autosuites = self
                .app
                .db(move |store| store.list_autosuites(owner.as_ref()))
                .await?;
            Ok(ListAutoSuitesResponse {
                autosuites: autosuites
                    .into_iter()
                    .map(|a| autosuite_to_proto(a, Vec::new()))
                    .collect(),
            })
        })
        .await
    }

    async fn edit_auto_suite(
        &self,
        request: Request<EditAutoSuiteRequest>,
    ) -> Result<Response<v1::AutoSuite>, Status> {
        observe("AutoSuiteService/EditAutoSuite", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let (current, _) = self.visible(&caller, request.id).await?;
            let mut changes = request.args.unwrap_or_default();
            // The owner stays: an edit changes what it schedules, not whose it is.
            changes.owner = current.owner.to_string();
            // What the edit gives (with a preset it names) wins over what it holds.
            let merged = with_preset(&self.app, &caller, changes)
                .await?
                .over(&current.args);
            let args = merged.clone().validate().map_err(errors::invalid)?;
            cuttle_core::build::check_branch(&args.ceph_branch).map_err(errors::invalid)?;
            if args.dry_run || args.rerun.is_some() {
                return Err(errors::invalid(cuttle_core::InvalidInput::new(
                    "autosuite",
                    "an AutoSuite schedules a suite when its build is ready; drop --dry-run and --rerun",
                )));
            }
            let build = crate::autosuites::wanted_build(&args);
            let by = match &caller {
                Caller::User { user, .. } => user.to_string(),
                Caller::Anonymous => String::new(),
            };
            let id = current.id;
            let edited = self
                .app
                .db(move |store| {
                    store.edit_autosuite(id, &build, &merged, &by, now())?;
                    store.get_autosuite(id)
                })
                .await?;
            tracing::info!(autosuite = id, "edited AutoSuite");
            Ok(autosuite_to_proto(edited.0, edited.1))
        })
        .await
    }

    async fn delete_auto_suite(
        &self,
        request: Request<DeleteAutoSuiteRequest>,
    ) -> Result<Response<DeleteAutoSuiteResponse>, Status> {
        observe("AutoSuiteService/DeleteAutoSuite", async {
            let caller = self.app.caller(request.metadata()).await?;
            let (current, _) = self.visible(&caller, request.into_inner().id).await?;
            let id = current.id;
            self.app.db(move |store| store.delete_autosuite(id)).await?;
            tracing::info!(autosuite = id, owner = %current.owner, "deleted AutoSuite");
            Ok(DeleteAutoSuiteResponse {})
        })
        .await
    }
}
