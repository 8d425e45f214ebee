//! `cuttle autosuite`: suite requests waiting for their build.

use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{
    AutoSuiteCommand, AutoSuiteEditArgs, AutoSuiteIdArgs, AutoSuiteListArgs, SuiteCliArgs,
};
use crate::error::Failure;
use crate::output::{print, print_json, table};
use crate::preset::args_json;
use crate::suite::to_proto;
use crate::time::format_unix_millis;

/// An AutoSuite as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct AutoSuiteJson {
    pub id: i64,
    pub owner: String,
    pub state: String,
    pub branch: String,
    pub sha1: String,
    pub distro: String,
    pub distro_version: String,
    pub flavor: String,
    /// The run it scheduled; null until it fired.
    pub run: Option<String>,
    pub reason: String,
    pub build_url: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub args: serde_json::Value,
    pub timeline: Vec<EventJson>,
}

/// One state change.
#[derive(Debug, Serialize)]
pub struct EventJson {
    pub at_ms: i64,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

pub fn to_json(autosuite: &v1::AutoSuite) -> AutoSuiteJson {
    AutoSuiteJson {
        id: autosuite.id,
        owner: autosuite.owner.clone(),
        state: autosuite.state.clone(),
        branch: autosuite.branch.clone(),
        sha1: autosuite.sha1.clone(),
        distro: autosuite.distro.clone(),
        distro_version: autosuite.distro_version.clone(),
        flavor: autosuite.flavor.clone(),
        run: if autosuite.state == "scheduled" {
            non_empty(&autosuite.run)
        } else {
            None
        },
        reason: autosuite.reason.clone(),
        build_url: autosuite.build_url.clone(),
        created_at_ms: autosuite.created_at_ms,
        updated_at_ms: autosuite.updated_at_ms,
        args: args_json(autosuite.args.as_ref()),
        timeline: autosuite
            .timeline
            .iter()
            .map(|event| EventJson {
                at_ms: event.at_ms,
                from: non_empty(&event.from),
                to: event.to.clone(),
                reason: event.reason.clone(),
            })
            .collect(),
    }
}

fn show(context: &Context, autosuite: &v1::AutoSuite) -> Result<(), Failure> {
    if context.json {
        return print_json(&to_json(autosuite));
    }
    let args = autosuite.args.clone().unwrap_or_default();
    let mut text = format!(
        "autosuite: {}\nowner:     {}\nstate:     {}\nbuild:     {}{} ({} {}, flavor {})\nsuite:     {} on {}\n",
        autosuite.id,
        autosuite.owner,
        autosuite.state,
        autosuite.branch,
        if autosuite.sha1.is_empty() {
            String::new()
        } else {
            format!(" @ {}", autosuite.sha1)
        },
        if autosuite.distro.is_empty() {
            "default distro"
        } else {
            &autosuite.distro
        },
        autosuite.distro_version,
        if autosuite.flavor.is_empty() {
            "default"
        } else {
            &autosuite.flavor
        },
        args.suite,
        args.machine_type,
    );
    if autosuite.state == "scheduled" {
        text.push_str(&format!(
            "run:       {} (`cuttle run show {}`)\n",
            autosuite.run, autosuite.run
        ));
    }
    if !autosuite.reason.is_empty() {
        text.push_str(&format!("reason:    {}\n", autosuite.reason));
    }
    if !autosuite.build_url.is_empty() {
        text.push_str(&format!("build:     {}\n", autosuite.build_url));
    }
    if !autosuite.timeline.is_empty() {
        text.push_str("timeline:\n");
        for event in &autosuite.timeline {
            text.push_str(&format!(
                "  {}  {}  {}\n",
                format_unix_millis(event.at_ms),
                event.to,
                event.reason
            ));
        }
    }
    print(text.trim_end())
}

async fn list(context: &Context, args: AutoSuiteListArgs) -> Result<(), Failure> {
    let api = context.connect().await?;
    let answer = api
        .autosuites()
        .list_auto_suites(v1::ListAutoSuitesRequest {
            owner: args.owner.unwrap_or_default(),
            all: args.all,
        })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    if context.json {
        let all: Vec<AutoSuiteJson> = answer.autosuites.iter().map(to_json).collect();
        return print_json(&all);
    }
    if answer.autosuites.is_empty() {
        return print(
            "no AutoSuites; `cuttle suite ... --wait-for-build` keeps one when a build is not ready",
        );
    }
    let rows: Vec<Vec<String>> = answer
        .autosuites
        .iter()
        .map(|a| {
            let args = a.args.clone().unwrap_or_default();
            vec![
                a.id.to_string(),
                a.owner.clone(),
                a.state.clone(),
                a.branch.clone(),
                args.suite,
                if a.state == "scheduled" {
                    a.run.clone()
                } else {
                    a.reason.clone()
                },
                format_unix_millis(a.updated_at_ms),
            ]
        })
        .collect();
    print(&table(
        &[
            "ID",
            "OWNER",
            "STATE",
            "BRANCH",
            "SUITE",
            "RUN/REASON",
            "CHANGED",
        ],
        &rows,
    ))
}

async fn add(context: &Context, args: SuiteCliArgs) -> Result<(), Failure> {
    let wire = to_proto(args)?;
    let api = context.connect().await?;
    let added = api
        .autosuites()
        .add_auto_suite(v1::AddAutoSuiteRequest { args: Some(wire) })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    show(context, &added)
}

async fn get(context: &Context, args: AutoSuiteIdArgs) -> Result<(), Failure> {
    let api = context.connect().await?;
    let found = api
        .autosuites()
        .get_auto_suite(v1::GetAutoSuiteRequest { id: args.id })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    show(context, &found)
}

async fn edit(context: &Context, args: AutoSuiteEditArgs) -> Result<(), Failure> {
    // Only the flags given: the server lays them over what the AutoSuite holds.
    let wire = to_proto(args.suite)?;
    let api = context.connect().await?;
    let edited = api
        .autosuites()
        .edit_auto_suite(v1::EditAutoSuiteRequest {
            id: args.id,
            args: Some(wire),
        })
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    show(context, &edited)
}

async fn delete(context: &Context, args: AutoSuiteIdArgs) -> Result<(), Failure> {
    let api = context.connect().await?;
    api.autosuites()
        .delete_auto_suite(v1::DeleteAutoSuiteRequest { id: args.id })
        .await
        .map_err(|s| api.failure(s))?;
    if context.json {
        return print_json(&serde_json::json!({ "deleted": args.id }));
    }
    print(&format!("deleted autosuite {}", args.id))
}

/// `cuttle autosuite ...`
pub async fn run(context: &Context, command: AutoSuiteCommand) -> Result<(), Failure> {
    match command {
        AutoSuiteCommand::List(args) => list(context, args).await,
        AutoSuiteCommand::Show(args) => get(context, args).await,
        AutoSuiteCommand::Add(args) => add(context, *args).await,
        AutoSuiteCommand::Edit(args) => edit(context, *args).await,
        AutoSuiteCommand::Delete(args) => delete(context, args).await,
    }
}
