//! The credential rpcs of `AdminService`: tokens (create, list, revoke,
//! bootstrap), client certificate bindings (bind, list) and WhoAmI.
//!
//! Secrets are drawn and hashed here, before proposing, so neither the log
//! nor the state ever holds one; the response is the only place a secret
//! appears.

use std::time::Duration;

use drover_proto::v1::{
    BindCertificateRequest, BindCertificateResponse, CertificateBinding as WireBinding,
    ListCertificateBindingsResponse,
};
use drover_proto::v1::{
    BootstrapTokenRequest, CreateTokenRequest, CreateTokenResponse, ListTokensResponse,
    RevokeTokenRequest, TokenInfo, TokenRole, WhoAmIResponse,
};
use tonic::Status;

use super::{node_status, propose_one, propose_then_read};
use crate::auth::Caller;
use crate::auth::secret;
use crate::clock::wall_now_ms;
use crate::raft::node::NodeHandle;
use crate::state::Command;
use crate::state::security::{CertificateBinding, Role, Token};

/// How long token reads and writes may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest ttl a token may be given: ten years.
const TTL_MAX_MS: i64 = 10 * 366 * 24 * 3600 * 1000;

/// The token rpcs for one node.
#[derive(Debug, Clone)]
pub struct Tokens {
    node: NodeHandle,
    auth_required: bool,
}

impl Tokens {
    /// Token rpcs on `node`; `auth_required` is reported by WhoAmI.
    pub fn new(node: NodeHandle, auth_required: bool) -> Self {
        Self {
            node,
            auth_required,
        }
    }

    /// CreateToken, by `caller` (an operator; the guard saw to that).
    pub async fn create(
        &self,
        caller: &Caller,
        request: CreateTokenRequest,
    ) -> Result<CreateTokenResponse, Status> {
        let role = role_of(request.role)?;
        if !(0..=TTL_MAX_MS).contains(&request.ttl_ms) {
            return Err(Status::invalid_argument(
                "a token's ttl is 0 (no expiry) up to ten years",
            ));
        }
        let expires_ms = (request.ttl_ms > 0).then(|| wall_now_ms() + request.ttl_ms);
        self.mint(
            Token {
                id: String::new(),
                name: request.name,
                role,
                namespaces: request.namespaces,
                secret_sha256: [0; 32],
                created_by: caller.identity.clone(),
                created_ms: 0,
                expires_ms,
            },
            false,
        )
        .await
    }

    /// BootstrapToken: an operator token, only while there is none.
    pub async fn bootstrap(
        &self,
        request: BootstrapTokenRequest,
    ) -> Result<CreateTokenResponse, Status> {
        let name = match request.name.as_str() {
            "" => "bootstrap".to_owned(),
            name => name.to_owned(),
        };
        self.mint(
            Token {
                id: String::new(),
                name,
                role: Role::Operator,
                namespaces: Vec::new(),
                secret_sha256: [0; 32],
                created_by: "bootstrap".to_owned(),
                created_ms: 0,
                expires_ms: None,
            },
            true,
        )
        .await
    }

    /// Draws the secret, proposes the token, and answers with both.
    async fn mint(&self, mut token: Token, bootstrap: bool) -> Result<CreateTokenResponse, Status> {
        let fresh = secret::generate().map_err(|e| Status::unavailable(e.to_string()))?;
        token.id = fresh.id.clone();
        token.secret_sha256 = fresh.secret_sha256;
        let id = fresh.id.clone();
        let command = Command::CreateToken { token, bootstrap };
        let stored = propose_then_read(&self.node, command, move |sm| {
            sm.core().security.tokens.get(&id).cloned()
        })
        .await?
        .ok_or_else(|| Status::internal("the created token is not in the state"))?;
        tracing::info!(token = %stored.id, name = %stored.name, role = stored.role.as_str(), "token created");
        Ok(CreateTokenResponse {
            token: Some(info(&stored)),
            secret: fresh.token,
        })
    }

    /// ListTokens, linearizable.
    pub async fn list(&self) -> Result<ListTokensResponse, Status> {
        let tokens = self
            .node
            .read(TOKEN_TIMEOUT, |sm| {
                sm.core().security.tokens.values().map(info).collect()
            })
            .await
            .map_err(node_status)?;
        Ok(ListTokensResponse { tokens })
    }

    /// RevokeToken.
    pub async fn revoke(&self, request: RevokeTokenRequest) -> Result<(), Status> {
        propose_one(&self.node, Command::RevokeToken { id: request.id })
            .await
            .map(drop)
    }

    /// BindCertificate, by `caller` (an operator; the guard saw to that).
    pub async fn bind(
        &self,
        caller: &Caller,
        request: BindCertificateRequest,
    ) -> Result<BindCertificateResponse, Status> {
        let binding = if request.unbind {
            None
        } else {
            Some(CertificateBinding {
                role: role_of(request.role)?,
                namespaces: request.namespaces,
                created_by: caller.identity.clone(),
                created_ms: 0,
            })
        };
        let identity = request.identity;
        let command = Command::BindCertificate {
            identity: identity.clone(),
            binding,
        };
        let stored = propose_then_read(&self.node, command, move |sm| {
            let bound = &sm.core().security.certificates;
            bound
                .get_key_value(&identity)
                .map(|(i, b)| binding_info(i, b))
        })
        .await?;
        Ok(BindCertificateResponse { binding: stored })
    }

    /// ListCertificateBindings, linearizable.
    pub async fn bindings(&self) -> Result<ListCertificateBindingsResponse, Status> {
        let bindings = self
            .node
            .read(TOKEN_TIMEOUT, |sm| {
                sm.core()
                    .security
                    .certificates
                    .iter()
                    .map(|(i, b)| binding_info(i, b))
                    .collect()
            })
            .await
            .map_err(node_status)?;
        Ok(ListCertificateBindingsResponse { bindings })
    }

    /// WhoAmI: the guard's view of the caller.
    pub fn who_am_i(&self, caller: &Caller) -> WhoAmIResponse {
        WhoAmIResponse {
            identity: caller.identity.clone(),
            role: caller.role_name().to_owned(),
            namespaces: caller.namespaces().map(<[_]>::to_vec).unwrap_or_default(),
            all_namespaces: caller.namespaces().is_none(),
            auth_required: self.auth_required,
            certificate: caller
                .certificate
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }
    }
}

/// A role from the wire.
fn role_of(wire: i32) -> Result<Role, Status> {
    match TokenRole::try_from(wire) {
        Ok(TokenRole::Submitter) => Ok(Role::Submitter),
        Ok(TokenRole::Operator) => Ok(Role::Operator),
        Ok(TokenRole::Worker) => Ok(Role::Worker),
        _ => Err(Status::invalid_argument(
            "a role is needed: submitter, operator or worker",
        )),
    }
}

/// A role for the wire.
fn wire_role(role: Role) -> i32 {
    let wire = match role {
        Role::Submitter => TokenRole::Submitter,
        Role::Operator => TokenRole::Operator,
        Role::Worker => TokenRole::Worker,
    };
    wire as i32
}

/// A certificate binding as the wire shows it.
fn binding_info(identity: &str, binding: &CertificateBinding) -> WireBinding {
    WireBinding {
        identity: identity.to_owned(),
        role: wire_role(binding.role),
        namespaces: binding.namespaces.clone(),
        created_by: binding.created_by.clone(),
        created_unix_ms: binding.created_ms,
    }
}

/// A token as the wire shows it: never its hash.
fn info(token: &Token) -> TokenInfo {
    TokenInfo {
        id: token.id.clone(),
        name: token.name.clone(),
        role: wire_role(token.role),
        namespaces: token.namespaces.clone(),
        created_by: token.created_by.clone(),
        created_unix_ms: token.created_ms,
        expires_unix_ms: token.expires_ms.unwrap_or(0),
    }
}
