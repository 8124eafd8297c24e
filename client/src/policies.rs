//! `drover policy ...`: where each namespace's specs may read and write.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use drover_net::Coordinators;
use drover_proto::v1::{ListNamespacePoliciesRequest, NamespacePolicy, SetNamespacePolicyRequest};

use crate::tokens::rfc3339;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Confine a namespace's specs: every dataset `input` and `output` must
    /// lie at or below an allowed URL, and `command` tasks are refused
    /// unless allowed. Checked at submit and at every scheduled run; jobs
    /// already running are not affected. NAMESPACE `*` sets the default for
    /// namespaces without a policy of their own.
    Set {
        /// The namespace, or `*`.
        namespace: String,
        /// A dataset URL prefix (`s3://bucket/team-a`, `file:///data/team-a`);
        /// repeat for more. None at all allows no dataset.
        #[arg(long = "allow-url", value_name = "URL")]
        allow_urls: Vec<String>,
        /// Also allow the `command` kind, which reaches whatever its worker
        /// can, whatever the URL list says.
        #[arg(long)]
        allow_command: bool,
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a namespace's policy: its specs fall back to the default
    /// policy (`*`), or are unrestricted when there is none.
    Clear {
        /// The namespace, or `*`.
        namespace: String,
    },
    /// List namespace policies.
    List {
        /// Stable JSON on standard output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: PolicyCommand, coordinators: &Coordinators) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Set {
            namespace,
            allow_urls,
            allow_command,
            json,
        } => {
            let request = SetNamespacePolicyRequest {
                namespace,
                allowed_urls: allow_urls,
                allow_command,
                clear: false,
            };
            let policy = set(coordinators, request).await?.unwrap_or_default();
            if json {
                outln!("{}", serde_json::to_string_pretty(&policy_json(&policy))?);
            } else {
                outln!("set the policy of {}", describe(&policy.namespace));
                print_policy(&policy);
            }
        }
        PolicyCommand::Clear { namespace } => {
            let request = SetNamespacePolicyRequest {
                namespace: namespace.clone(),
                clear: true,
                ..Default::default()
            };
            set(coordinators, request).await?;
            outln!("cleared the policy of {}", describe(&namespace));
        }
        PolicyCommand::List { json } => {
            let policies = coordinators
                .admin(|mut c| async move {
                    c.list_namespace_policies(ListNamespacePoliciesRequest {})
                        .await
                        .map(|r| r.into_inner().policies)
                })
                .await?;
            if json {
                let list: Vec<_> = policies.iter().map(policy_json).collect();
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else if policies.is_empty() {
                outln!("no namespace policies: every namespace may use any dataset URL");
            } else {
                for (i, policy) in policies.iter().enumerate() {
                    if i > 0 {
                        outln!();
                    }
                    outln!("{}", describe(&policy.namespace));
                    print_policy(policy);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set(
    coordinators: &Coordinators,
    request: SetNamespacePolicyRequest,
) -> Result<Option<NamespacePolicy>> {
    coordinators
        .admin(|mut c| {
            let request = request.clone();
            async move {
                c.set_namespace_policy(request)
                    .await
                    .map(|r| r.into_inner().policy)
            }
        })
        .await
        .map_err(Into::into)
}

fn describe(namespace: &str) -> String {
    if namespace == "*" {
        "the default (`*`, for namespaces without their own)".to_owned()
    } else {
        format!("namespace {namespace}")
    }
}

fn print_policy(policy: &NamespacePolicy) {
    if policy.allowed_urls.is_empty() {
        outln!("  datasets   none");
    }
    for (i, url) in policy.allowed_urls.iter().enumerate() {
        outln!("  {:<9}  {url}", if i == 0 { "datasets" } else { "" });
    }
    outln!(
        "  command    {}",
        if policy.allow_command {
            "allowed"
        } else {
            "refused"
        }
    );
    outln!(
        "  set by     {} at {}",
        policy.updated_by,
        rfc3339(policy.updated_unix_ms)
    );
}

fn policy_json(policy: &NamespacePolicy) -> serde_json::Value {
    serde_json::json!({
        "namespace": policy.namespace,
        "allowedUrls": policy.allowed_urls,
        "allowCommand": policy.allow_command,
        "updatedBy": policy.updated_by,
        "updatedAt": rfc3339(policy.updated_unix_ms),
    })
}
