//! The namespace policy rpcs of `AdminService`: set (or clear) and list.
//! The policy itself is checked in the state machine
//! ([`crate::state::policy`]), so every replica admits the same specs.

use std::time::Duration;

use drover_proto::v1::{
    ListNamespacePoliciesResponse, NamespacePolicy as WirePolicy, SetNamespacePolicyRequest,
    SetNamespacePolicyResponse,
};
use tonic::Status;

use super::{node_status, propose_then_read};
use crate::auth::Caller;
use crate::raft::node::NodeHandle;
use crate::state::Command;
use crate::state::policy::NamespacePolicy;

/// How long policy reads may take.
const POLICY_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespace policy rpcs for one node.
#[derive(Debug, Clone)]
pub struct Policies {
    node: NodeHandle,
}

impl Policies {
    /// Policy rpcs on `node`.
    pub fn new(node: NodeHandle) -> Self {
        Self { node }
    }

    /// SetNamespacePolicy, by `caller` (an operator; the guard saw to
    /// that). Answers with the policy as stored, normalised.
    pub async fn set(
        &self,
        caller: &Caller,
        request: SetNamespacePolicyRequest,
    ) -> Result<SetNamespacePolicyResponse, Status> {
        let policy = (!request.clear).then(|| NamespacePolicy {
            allowed_urls: request.allowed_urls,
            allow_command: request.allow_command,
            updated_by: caller.identity.clone(),
            updated_ms: 0,
        });
        let namespace = request.namespace;
        let command = Command::SetNamespacePolicy {
            namespace: namespace.clone(),
            policy,
        };
        let stored = propose_then_read(&self.node, command, move |sm| {
            let policies = &sm.core().security.policies;
            policies.get_key_value(&namespace).map(|(n, p)| wire(n, p))
        })
        .await?;
        Ok(SetNamespacePolicyResponse { policy: stored })
    }

    /// ListNamespacePolicies, linearizable.
    pub async fn list(&self) -> Result<ListNamespacePoliciesResponse, Status> {
        let policies = self
            .node
            .read(POLICY_TIMEOUT, |sm| {
                sm.core()
                    .security
                    .policies
                    .iter()
                    .map(|(n, p)| wire(n, p))
                    .collect()
            })
            .await
            .map_err(node_status)?;
        Ok(ListNamespacePoliciesResponse { policies })
    }
}

/// A policy as the wire shows it.
fn wire(namespace: &str, policy: &NamespacePolicy) -> WirePolicy {
    WirePolicy {
        namespace: namespace.to_owned(),
        allowed_urls: policy.allowed_urls.clone(),
        allow_command: policy.allow_command,
        updated_by: policy.updated_by.clone(),
        updated_unix_ms: policy.updated_ms,
    }
}
