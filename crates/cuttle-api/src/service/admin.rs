//! AdminService: the lock history and its audit (invariant 1, checked over all time),
//! and API tokens.

use tonic::{Request, Response, Status};

use cuttle_core::auth::{Action, Caller, Role};
use cuttle_core::{NodeName, Owner};
use cuttle_proto::convert::{lock_event_to_proto, token_to_proto};
use cuttle_proto::v1::admin_service_server::AdminService;
use cuttle_proto::v1::{
    AuditLocksRequest, AuditLocksResponse, CreateTokenRequest, CreateTokenResponse,
    ListTokensRequest, ListTokensResponse, LockHistoryRequest, LockHistoryResponse,
    RevokeTokenRequest, Token, WhoAmIRequest, WhoAmIResponse,
};

use super::{optional, required};
use crate::{App, auth, errors, now, observe};

#[derive(Debug)]
pub struct AdminApi {
    app: App,
}

impl AdminApi {
    pub fn new(app: App) -> AdminApi {
        AdminApi { app }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn audit_locks(
        &self,
        request: Request<AuditLocksRequest>,
    ) -> Result<Response<AuditLocksResponse>, Status> {
        observe("AdminService/AuditLocks", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let report = self.app.db(|store| store.audit_locks()).await?;
            if !report.clean() {
                tracing::error!(violations = report.violations.len(), first = %report.violations[0], "lock audit found violations");
            }
            Ok(AuditLocksResponse {
                events: report.events as u64,
                nodes: report.nodes as u64,
                held_now: report.held_now as u64,
                violations: report.violations,
            })
        })
        .await
    }

    async fn lock_history(
        &self,
        request: Request<LockHistoryRequest>,
    ) -> Result<Response<LockHistoryResponse>, Status> {
        observe("AdminService/LockHistory", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let request = request.into_inner();
            let node = optional(Some(request.node.as_str()), NodeName::parse)?;
            let limit = if request.limit == 0 {
                100
            } else {
                request.limit.min(100_000)
            };
            let events = self
                .app
                .db(move |store| store.lock_history(node.as_ref(), limit.into()))
                .await?;
            Ok(LockHistoryResponse {
                events: events.iter().map(lock_event_to_proto).collect(),
            })
        })
        .await
    }

    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        observe("AdminService/CreateToken", async {
            let caller = self
                .app
                .authorize(request.metadata(), Action::ManageTokens)
                .await?;
            let request = request.into_inner();
            let user = required(
                &request.user,
                "user",
                "say who the token is for (--user)",
                Owner::parse,
            )?;
            let role = required(
                &request.role,
                "role",
                "give one of admin, developer, service (--role)",
                Role::parse,
            )?;
            let secret = auth::random_token().map_err(|e| Status::internal(format!("{e:#}")))?;
            let digest = auth::digest_hex(&secret);
            // Enough of the secret to tell tokens apart, far too little to guess the rest.
            let prefix: String = secret.chars().take(12).collect();
            let created_by = caller.user().map(ToString::to_string).unwrap_or_default();
            let record = self
                .app
                .db(move |store| store.create_token(&user, role, &digest, &prefix, &created_by, now()))
                .await?;
            tracing::info!(token_id = record.id, user = %record.user, role = %record.role, by = %record.created_by, "token created");
            Ok(CreateTokenResponse {
                token: Some(token_to_proto(&record)),
                secret,
            })
        })
        .await
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        observe("AdminService/ListTokens", async {
            self.app
                .authorize(request.metadata(), Action::ManageTokens)
                .await?;
            let tokens = self.app.db(|store| store.list_tokens()).await?;
            Ok(ListTokensResponse {
                tokens: tokens.iter().map(token_to_proto).collect(),
            })
        })
        .await
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<Token>, Status> {
        observe("AdminService/RevokeToken", async {
            let caller = self
                .app
                .authorize(request.metadata(), Action::ManageTokens)
                .await?;
            let id = request.into_inner().id;
            if id <= 0 {
                return Err(errors::invalid(cuttle_core::InvalidInput::new(
                    "token id",
                    format!("{id} is not a token id; see `cuttle admin token list`"),
                )));
            }
            let record = self
                .app
                .db(move |store| store.revoke_token(id, now()))
                .await?;
            self.app.authenticator().forget_all();
            tracing::info!(token_id = id, user = %record.user, by = %caller, "token revoked");
            Ok(token_to_proto(&record))
        })
        .await
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        observe("AdminService/WhoAmI", async {
            let caller = self.app.caller(request.metadata()).await?;
            Ok(match caller {
                Caller::Anonymous => WhoAmIResponse::default(),
                Caller::User { user, role } => WhoAmIResponse {
                    user: user.to_string(),
                    role: role.as_str().to_owned(),
                },
            })
        })
        .await
    }
}
