//! Who a caller is, and which services its role opens.
//!
//! The guard decides per service from the method path; the job service then
//! narrows a submitter to its namespaces per request, as only it knows which
//! job a request touches.

use drover_net::PeerIdentity;
use tonic::Status;

use crate::state::security::{CertificateBinding, Role, Token};

/// What a request's credentials grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Authentication is off: every service, every namespace.
    Everything,
    /// A token's role (and, for a submitter, its namespaces), or a client
    /// certificate's bound role.
    Token(Role, Vec<String>),
    /// A worker certificate without a token: the worker service.
    WorkerCertificate,
    /// No credentials, with authentication on: only the rpcs that need
    /// none (bootstrap, health).
    Nothing,
}

/// The caller of a request, as the guard identified it; the services read
/// it from the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who, for the audit log and WhoAmI: `token 0123456789ab (ci)`,
    /// `certificate worker/pool-a`, or `anonymous`.
    pub identity: String,
    /// The token's id, when it came with one.
    pub token_id: Option<String>,
    /// The TLS peer certificate's identity, when it came over mutual TLS.
    pub certificate: Option<PeerIdentity>,
    /// What it may do.
    pub grant: Grant,
}

impl Caller {
    /// The caller when authentication is off.
    pub fn anonymous(certificate: Option<PeerIdentity>) -> Self {
        Self {
            identity: match &certificate {
                Some(c) => format!("certificate {c}"),
                None => "anonymous".to_owned(),
            },
            token_id: None,
            certificate,
            grant: Grant::Everything,
        }
    }

    /// A caller holding `token`.
    pub fn with_token(token: &Token, certificate: Option<PeerIdentity>) -> Self {
        Self {
            identity: format!("token {} ({})", token.id, token.name),
            token_id: Some(token.id.clone()),
            certificate,
            grant: Grant::Token(token.role, token.namespaces.clone()),
        }
    }

    /// A client that presented only its certificate, which an operator
    /// bound to a role.
    pub fn bound_certificate(certificate: PeerIdentity, binding: &CertificateBinding) -> Self {
        Self {
            identity: format!("certificate {certificate}"),
            token_id: None,
            certificate: Some(certificate),
            grant: Grant::Token(binding.role, binding.namespaces.clone()),
        }
    }

    /// A worker that presented only its certificate.
    pub fn worker_certificate(name: &str) -> Self {
        let certificate = PeerIdentity::Worker(name.to_owned());
        Self {
            identity: format!("certificate {certificate}"),
            token_id: None,
            certificate: Some(certificate),
            grant: Grant::WorkerCertificate,
        }
    }

    /// The role name for the audit log and WhoAmI.
    pub fn role_name(&self) -> &'static str {
        match &self.grant {
            Grant::Everything => "unrestricted",
            Grant::Token(role, _) => role.as_str(),
            Grant::WorkerCertificate => "worker",
            Grant::Nothing => "none",
        }
    }

    /// The namespaces it is limited to; `None` for all of them.
    pub fn namespaces(&self) -> Option<&[String]> {
        match &self.grant {
            Grant::Token(Role::Submitter, namespaces) => Some(namespaces),
            Grant::Token(Role::Worker, _) | Grant::WorkerCertificate | Grant::Nothing => Some(&[]),
            Grant::Everything | Grant::Token(Role::Operator, _) => None,
        }
    }

    /// Whether it may see and touch jobs in `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        self.namespaces()
            .is_none_or(|allowed| allowed.iter().any(|n| n == namespace))
    }

    /// `Ok` when it may touch jobs in `namespace`; otherwise
    /// `PERMISSION_DENIED` naming the namespaces it has.
    pub fn check_namespace(&self, namespace: &str) -> Result<(), Status> {
        if self.covers(namespace) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "namespace `{namespace}` is not one of yours ({}); ask an operator for a token that covers it",
            self.namespaces().unwrap_or_default().join(", ")
        )))
    }

    /// The caller of a request, as the guard left it. A request that did
    /// not pass the guard (a service called in-process, in tests) is
    /// unrestricted, as with authentication off.
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller::anonymous(None))
    }
}

/// The services a method path belongs to, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Coordinator-to-coordinator: the Raft service checks node
    /// certificates itself.
    Raft,
    /// Jobs: operators, and submitters in their namespaces.
    Job,
    /// Leasing: workers and operators.
    Worker,
    /// Cluster administration: operators.
    Admin,
    /// The first token: anyone, while the cluster has none (the state
    /// machine refuses it afterwards).
    Bootstrap,
    /// Who am I: anyone with credentials.
    WhoAmI,
    /// Health checks, and anything unknown (answered `UNIMPLEMENTED`).
    Open,
}

impl Service {
    /// The service's name as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Service::Raft => "raft",
            Service::Job => "job",
            Service::Worker => "worker",
            Service::Admin => "admin",
            Service::Bootstrap => "bootstrap",
            Service::WhoAmI => "whoami",
            Service::Open => "other",
        }
    }

    /// Classifies `/package.Service/Method`.
    pub fn of_path(path: &str) -> Self {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default();
        let method = parts.next().unwrap_or_default();
        match (service, method) {
            ("drover.v1.RaftService", _) => Service::Raft,
            ("drover.v1.JobService", _) => Service::Job,
            ("drover.v1.WorkerService", _) => Service::Worker,
            ("drover.v1.AdminService", "BootstrapToken") => Service::Bootstrap,
            ("drover.v1.AdminService", "WhoAmI") => Service::WhoAmI,
            ("drover.v1.AdminService", _) => Service::Admin,
            _ => Service::Open,
        }
    }

    /// Whether `grant` opens this service (namespaces are checked later).
    pub fn admits(self, grant: &Grant) -> bool {
        match (self, grant) {
            (Service::Raft | Service::Bootstrap | Service::Open, _) => true,
            (_, Grant::Nothing) => false,
            (_, Grant::Everything | Grant::Token(Role::Operator, _)) => true,
            (Service::WhoAmI, _) => true,
            (Service::Job, Grant::Token(Role::Submitter, _)) => true,
            (Service::Worker, Grant::Token(Role::Worker, _) | Grant::WorkerCertificate) => true,
            _ => false,
        }
    }

    /// Who may call it, for a refusal's message.
    pub fn who_may(self) -> &'static str {
        match self {
            Service::Job => "operator and submitter tokens",
            Service::Worker => "worker certificates, and worker and operator tokens",
            Service::Admin => "operator tokens",
            Service::Raft | Service::Bootstrap | Service::WhoAmI | Service::Open => "anyone",
        }
    }

    /// Whether the rpc needs credentials at all when authentication is on.
    pub fn needs_credentials(self) -> bool {
        !matches!(self, Service::Raft | Service::Bootstrap | Service::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, namespaces: &[&str]) -> Grant {
        Grant::Token(role, namespaces.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn each_role_opens_exactly_its_services() {
        use Service::*;
        let submitter = token(Role::Submitter, &["a"]);
        let operator = token(Role::Operator, &[]);
        let worker = token(Role::Worker, &[]);
        let cert = Grant::WorkerCertificate;
        let table = [
            (Job, [true, true, false, false]),
            (Worker, [false, true, true, true]),
            (Admin, [false, true, false, false]),
            (WhoAmI, [true, true, true, true]),
            (Bootstrap, [true, true, true, true]),
        ];
        for (service, expected) in table {
            let got = [&submitter, &operator, &worker, &cert].map(|g| service.admits(g));
            assert_eq!(got, expected, "{service:?}");
            assert!(service.admits(&Grant::Everything));
            assert_eq!(service.admits(&Grant::Nothing), service == Bootstrap);
        }
    }

    #[test]
    fn paths_are_classified_by_service_and_method() {
        assert_eq!(
            Service::of_path("/drover.v1.JobService/SubmitJob"),
            Service::Job
        );
        assert_eq!(
            Service::of_path("/drover.v1.AdminService/BootstrapToken"),
            Service::Bootstrap
        );
        assert_eq!(
            Service::of_path("/drover.v1.AdminService/AddNode"),
            Service::Admin
        );
        assert_eq!(
            Service::of_path("/drover.v1.WorkerService/Lease"),
            Service::Worker
        );
        assert_eq!(
            Service::of_path("/grpc.health.v1.Health/Check"),
            Service::Open
        );
        assert_eq!(Service::of_path("garbage"), Service::Open);
    }

    #[test]
    fn a_submitter_is_held_to_its_namespaces() {
        let c = Caller {
            identity: "t".into(),
            token_id: None,
            certificate: None,
            grant: token(Role::Submitter, &["team-a"]),
        };
        assert!(c.check_namespace("team-a").is_ok());
        let denied = c.check_namespace("team-b").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("team-a"), "{}", denied.message());
        assert!(Caller::anonymous(None).covers("anything"));
        assert!(!Caller::worker_certificate("w").covers("team-a"));
    }
}
