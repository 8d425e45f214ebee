//! `cuttle preset`: saved suite requests, kept by cuttle-api per owner.

use cuttle_proto::convert::{suite_args_from_proto, suite_args_to_proto};
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{PresetCommand, PresetListArgs, PresetNameArgs, PresetSaveArgs};
use crate::error::Failure;
use crate::output::{print, print_json, table};
use crate::suite::to_proto;
use crate::time::format_unix_millis;

/// A preset as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct PresetJson {
    pub owner: String,
    pub name: String,
    pub args: serde_json::Value,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The flags a preset keeps, without the empty ones.
pub(crate) fn args_json(args: Option<&v1::SuiteArgs>) -> serde_json::Value {
    let Some(args) = args else {
        return serde_json::Value::Null;
    };
    let raw = suite_args_from_proto(args.clone());
    let mut value = serde_json::to_value(raw).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| match v {
            serde_json::Value::Null => false,
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Number(n) => n.as_u64() != Some(0),
            serde_json::Value::Object(_) => true,
        });
    }
    value
}

fn to_json(preset: &v1::Preset) -> PresetJson {
    PresetJson {
        owner: preset.owner.clone(),
        name: preset.name.clone(),
        args: args_json(preset.args.as_ref()),
        created_at_ms: preset.created_at_ms,
        updated_at_ms: preset.updated_at_ms,
    }
}

fn show(context: &Context, preset: &v1::Preset) -> Result<(), Failure> {
    if context.json {
        return print_json(&to_json(preset));
    }
    let mut text = format!(
        "preset:   {}/{}\nsaved:    {}\n",
        preset.owner,
        preset.name,
        format_unix_millis(preset.updated_at_ms)
    );
    if let serde_json::Value::Object(map) = args_json(preset.args.as_ref()) {
        for (key, value) in map {
            let shown = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            text.push_str(&format!("{key}: {shown}\n"));
        }
    }
    print(&text)
}

fn empty(text: Option<String>) -> String {
    text.unwrap_or_default()
}

async fn list(context: &Context, args: PresetListArgs) -> Result<(), Failure> {
    let owner = if args.all {
        "*".to_owned()
    } else {
        empty(args.owner)
    };
    let api = context.connect().await?;
    let answer = api
        .presets()
        .list_presets(v1::ListPresetsRequest { owner })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    if context.json {
        let all: Vec<PresetJson> = answer.presets.iter().map(to_json).collect();
        return print_json(&all);
    }
    if answer.presets.is_empty() {
        return print("no presets; save one with `cuttle preset add NAME -s SUITE ...`");
    }
    let rows: Vec<Vec<String>> = answer
        .presets
        .iter()
        .map(|p| {
            let args = p.args.clone().unwrap_or_default();
            vec![
                p.owner.clone(),
                p.name.clone(),
                args.suite,
                args.machine_type,
                format_unix_millis(p.updated_at_ms),
            ]
        })
        .collect();
    print(&table(
        &["OWNER", "NAME", "SUITE", "MACHINE_TYPE", "SAVED"],
        &rows,
    ))
}

async fn save(context: &Context, args: PresetSaveArgs, edit: bool) -> Result<(), Failure> {
    let owner = empty(args.preset_owner);
    let mut wire = to_proto(args.suite)?;
    let api = context.connect().await?;
    let mut presets = api.presets();
    if edit {
        // Only the flags given change: lay them over what is saved.
        let saved = presets
            .get_preset(v1::GetPresetRequest {
                owner: owner.clone(),
                name: args.preset_name.clone(),
            })
            .await
            .map_err(|s| api.failure(s))?
            .into_inner();
        let base = suite_args_from_proto(saved.args.unwrap_or_default());
        wire = suite_args_to_proto(suite_args_from_proto(wire).over(&base));
    }
    let saved = presets
        .save_preset(v1::SavePresetRequest {
            owner,
            name: args.preset_name,
            args: Some(wire),
            replace: edit,
        })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    show(context, &saved)
}

async fn get(context: &Context, args: PresetNameArgs) -> Result<(), Failure> {
    let api = context.connect().await?;
    let preset = api
        .presets()
        .get_preset(v1::GetPresetRequest {
            owner: empty(args.owner),
            name: args.name,
        })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    show(context, &preset)
}

async fn delete(context: &Context, args: PresetNameArgs) -> Result<(), Failure> {
    let api = context.connect().await?;
    let name = args.name.clone();
    api.presets()
        .delete_preset(v1::DeletePresetRequest {
            owner: empty(args.owner),
            name: args.name,
        })
        .await
        .map_err(|s| api.failure(s))?;
    if context.json {
        return print_json(&serde_json::json!({ "deleted": name }));
    }
    print(&format!("deleted preset {name}"))
}

/// `cuttle preset ...`
pub async fn run(context: &Context, command: PresetCommand) -> Result<(), Failure> {
    match command {
        PresetCommand::List(args) => list(context, args).await,
        PresetCommand::Show(args) => get(context, args).await,
        PresetCommand::Add(args) => save(context, *args, false).await,
        PresetCommand::Edit(args) => save(context, *args, true).await,
        PresetCommand::Delete(args) => delete(context, args).await,
    }
}
