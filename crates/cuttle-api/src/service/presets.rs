//! PresetService: saved suite requests, each visible to its owner and to admins only.

use tonic::{Request, Response, Status};

use cuttle_core::auth::{Caller, Role};
use cuttle_core::{Owner, PresetName};
use cuttle_proto::convert::{preset_to_proto, suite_args_from_proto};
use cuttle_proto::v1::preset_service_server::PresetService;
use cuttle_proto::v1::{
    DeletePresetRequest, DeletePresetResponse, GetPresetRequest, ListPresetsRequest,
    ListPresetsResponse, Preset, SavePresetRequest,
};

use super::{optional, required};
use crate::{App, errors, now, observe};

#[derive(Debug)]
pub struct PresetApi {
    app: App,
}

impl PresetApi {
    pub fn new(app: App) -> PresetApi {
        PresetApi { app }
    }
}

/// Whose presets `caller` names with `owner` (default: their own), checked: a developer
/// only their own, an admin anyone's, nobody without a token.
pub(crate) fn preset_owner(caller: &Caller, owner: &str) -> Result<Owner, Status> {
    let Caller::User { user, role } = caller else {
        return Err(Status::unauthenticated(
            "presets belong to someone: send your token (--token, CUTTLE_TOKEN or ~/.config/cuttle/token)",
        ));
    };
    let owner = optional(Some(owner), Owner::parse)?.unwrap_or_else(|| user.clone());
    if &owner != user && *role != Role::Admin {
        return Err(Status::permission_denied(format!(
            "{user} may not see or change {owner}'s presets; a developer has only their own (an admin has all)"
        )));
    }
    Ok(owner)
}

fn name(text: &str) -> Result<PresetName, Status> {
    required(text, "preset name", "name the preset", PresetName::parse)
}

#[tonic::async_trait]
impl PresetService for PresetApi {
    async fn save_preset(
        &self,
        request: Request<SavePresetRequest>,
    ) -> Result<Response<Preset>, Status> {
        observe("PresetService/SavePreset", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let owner = preset_owner(&caller, &request.owner)?;
            let name = name(&request.name)?;
            let args = suite_args_from_proto(request.args.unwrap_or_default())
                .for_preset()
                .map_err(errors::invalid)?;
            let replace = request.replace;
            let saved = self
                .app
                .db(move |store| store.save_preset(&owner, &name, &args, replace, now()))
                .await?;
            tracing::info!(owner = %saved.owner, preset = %saved.name, replace, "saved preset");
            Ok(preset_to_proto(saved))
        })
        .await
    }

    async fn get_preset(
        &self,
        request: Request<GetPresetRequest>,
    ) -> Result<Response<Preset>, Status> {
        observe("PresetService/GetPreset", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let owner = preset_owner(&caller, &request.owner)?;
            let name = name(&request.name)?;
            let preset = self
                .app
                .db(move |store| store.get_preset(&owner, &name))
                .await?;
            Ok(preset_to_proto(preset))
        })
        .await
    }

    async fn list_presets(
        &self,
        request: Request<ListPresetsRequest>,
    ) -> Result<Response<ListPresetsResponse>, Status> {
        observe("PresetService/ListPresets", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let owner = if request.owner.trim() == "*" {
                if caller.role() != Some(Role::Admin) {
                    return Err(Status::permission_denied(
                        "listing everyone's presets needs the admin role; list your own (no owner)",
                    ));
                }
                None
            } else {
                Some(preset_owner(&caller, &request.owner)?)
            };
            let presets = self
                .app
                .db(move |store| store.list_presets(owner.as_ref()))
                .await?;
            Ok(ListPresetsResponse {
                presets: presets.into_iter().map(preset_to_proto).collect(),
            })
        })
        .await
    }

    async fn delete_preset(
        &self,
        request: Request<DeletePresetRequest>,
    ) -> Result<Response<DeletePresetResponse>, Status> {
        observe("PresetService/DeletePreset", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let owner = preset_owner(&caller, &request.owner)?;
            let name = name(&request.name)?;
            let (shown_owner, shown_name) = (owner.clone(), name.clone());
            self.app
                .db(move |store| store.delete_preset(&owner, &name))
                .await?;
            tracing::info!(owner = %shown_owner, preset = %shown_name, "deleted preset");
            Ok(DeletePresetResponse {})
        })
        .await
    }
}
