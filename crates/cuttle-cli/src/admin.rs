//! `cuttle admin ...`: the lock history and its audit, API tokens, and who am I.

use serde::Serialize;

use cuttle_core::NodeName;
use cuttle_core::auth::Role;
use cuttle_proto::v1;

use crate::Context;
use crate::cli::{AdminCommand, LockHistoryArgs, TokenCommand, TokenCreateArgs};
use crate::error::Failure;
use crate::output::{fields, print, print_json, table};
use crate::time::format_unix_millis;

pub async fn run(context: &Context, command: AdminCommand) -> Result<(), Failure> {
    match command {
        AdminCommand::Audit => audit(context).await,
        AdminCommand::LockHistory(args) => lock_history(context, args).await,
        AdminCommand::Token(TokenCommand::Create(args)) => create_token(context, args).await,
        AdminCommand::Token(TokenCommand::List) => list_tokens(context).await,
        AdminCommand::Token(TokenCommand::Revoke(args)) => revoke_token(context, args.id).await,
        AdminCommand::Whoami => whoami(context).await,
    }
}

#[derive(Debug, Serialize)]
struct TokenJson<'a> {
    id: i64,
    user: &'a str,
    role: &'a str,
    prefix: &'a str,
    created_at_ms: i64,
    created_by: &'a str,
    revoked_at_ms: Option<i64>,
}

impl<'a> From<&'a v1::Token> for TokenJson<'a> {
    fn from(token: &'a v1::Token) -> Self {
        TokenJson {
            id: token.id,
            user: &token.user,
            role: &token.role,
            prefix: &token.prefix,
            created_at_ms: token.created_at_ms,
            created_by: &token.created_by,
            revoked_at_ms: token.revoked_at_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct CreatedJson<'a> {
    token: TokenJson<'a>,
    secret: &'a str,
}

async fn create_token(context: &Context, args: TokenCreateArgs) -> Result<(), Failure> {
    // Checked here too, so a typo is reported even when the API is down.
    let user = cuttle_core::Owner::parse(&args.user)?;
    let role = Role::parse(&args.role)?;
    let api = context.connect().await?;
    let created = api
        .admin()
        .create_token(v1::CreateTokenRequest {
            user: user.to_string(),
            role: role.as_str().to_owned(),
        })
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    let token = created.token.unwrap_or_default();
    if context.json {
        return print_json(&CreatedJson {
            token: TokenJson::from(&token),
            secret: &created.secret,
        });
    }
    print(&format!(
        "created token {} for {} ({}); it is shown once, on the next line:\n{}\n",
        token.id, token.user, token.role, created.secret
    ))
}

async fn list_tokens(context: &Context) -> Result<(), Failure> {
    let api = context.connect().await?;
    let answer = api
        .admin()
        .list_tokens(v1::ListTokensRequest {})
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        let tokens: Vec<TokenJson<'_>> = answer.tokens.iter().map(TokenJson::from).collect();
        return print_json(&tokens);
    }
    if answer.tokens.is_empty() {
        return print(
            "no tokens (the bootstrap admin token in cuttle-api's data directory is not listed)\n",
        );
    }
    let rows: Vec<Vec<String>> = answer
        .tokens
        .iter()
        .map(|token| {
            vec![
                token.id.to_string(),
                token.user.clone(),
                token.role.clone(),
                format!("{}…", token.prefix),
                format_unix_millis(token.created_at_ms),
                token.created_by.clone(),
                token
                    .revoked_at_ms
                    .map_or_else(|| "-".to_owned(), format_unix_millis),
            ]
        })
        .collect();
    print(&table(
        &["id", "user", "role", "token", "created", "by", "revoked"],
        &rows,
    ))
}

async fn revoke_token(context: &Context, id: i64) -> Result<(), Failure> {
    let api = context.connect().await?;
    let token = api
        .admin()
        .revoke_token(v1::RevokeTokenRequest { id })
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        return print_json(&TokenJson::from(&token));
    }
    print(&format!(
        "revoked token {} of {} ({})\n",
        token.id, token.user, token.role
    ))
}

async fn whoami(context: &Context) -> Result<(), Failure> {
    let api = context.connect().await?;
    let me = api
        .admin()
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        return print_json(&serde_json::json!({ "user": me.user, "role": me.role }));
    }
    if me.user.is_empty() {
        return print("anonymous (no token: --token, CUTTLE_TOKEN or ~/.config/cuttle/token)\n");
    }
    print(&fields(&[("user", me.user), ("role", me.role)]))
}

#[derive(Debug, Serialize)]
struct AuditJson<'a> {
    clean: bool,
    events: u64,
    nodes: u64,
    held_now: u64,
    violations: &'a [String],
}

/// The audit's counts, then each violation on its own line.
pub fn audit_text(report: &v1::AuditLocksResponse) -> String {
    let verdict = if report.violations.is_empty() {
        "clean: no node was ever held by two holders at once".to_owned()
    } else {
        format!("{} violation(s)", report.violations.len())
    };
    let mut text = fields(&[
        ("audit", verdict),
        ("events", report.events.to_string()),
        ("nodes", report.nodes.to_string()),
        ("held_now", report.held_now.to_string()),
    ]);
    for violation in &report.violations {
        text.push_str(&format!("violation: {violation}\n"));
    }
    text
}

async fn audit(context: &Context) -> Result<(), Failure> {
    let api = context.connect().await?;
    let report = api
        .admin()
        .audit_locks(v1::AuditLocksRequest {})
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&AuditJson {
            clean: report.violations.is_empty(),
            events: report.events,
            nodes: report.nodes,
            held_now: report.held_now,
            violations: &report.violations,
        })?;
    } else {
        print(&audit_text(&report))?;
    }
    if report.violations.is_empty() {
        Ok(())
    } else {
        Err(Failure::AuditFailed(report.violations.len()))
    }
}

#[derive(Debug, Serialize)]
struct LockEventJson<'a> {
    id: i64,
    node: &'a str,
    action: &'a str,
    holder: &'a str,
    job_id: Option<i64>,
    by: &'a str,
    at_ms: i64,
}

async fn lock_history(context: &Context, args: LockHistoryArgs) -> Result<(), Failure> {
    let node = match &args.node {
        Some(node) => NodeName::parse(node)?.to_string(),
        None => String::new(),
    };
    let api = context.connect().await?;
    let answer = api
        .admin()
        .lock_history(v1::LockHistoryRequest {
            node,
            limit: args.limit.unwrap_or(0),
        })
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        let events: Vec<LockEventJson<'_>> = answer
            .events
            .iter()
            .map(|event| LockEventJson {
                id: event.id,
                node: &event.node,
                action: &event.action,
                holder: &event.holder,
                job_id: event.job_id,
                by: &event.by,
                at_ms: event.at_ms,
            })
            .collect();
        return print_json(&events);
    }
    let rows: Vec<Vec<String>> = answer
        .events
        .iter()
        .map(|event| {
            vec![
                format_unix_millis(event.at_ms),
                event.node.clone(),
                event.action.clone(),
                event.holder.clone(),
                event
                    .job_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
                event.by.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return print("no lock events\n");
    }
    print(&table(
        &["at", "node", "action", "holder", "job", "by"],
        &rows,
    ))
}
