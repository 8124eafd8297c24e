//! The EC2 instance metadata service (IMDSv2), for a worker on EC2: the
//! instance id it names itself by, and the notices that its instance is
//! about to go away, which start the same drain as SIGTERM:
//!
//! - a spot interruption (`spot/instance-action`), two minutes ahead;
//! - an Auto Scaling scale-in held by a lifecycle hook
//!   (`autoscaling/target-lifecycle-state` turning `Terminated`).
//!
//! IMDSv2 wants a session token first (`PUT /latest/api/token`), sent with
//! every read; a 401 means it expired and a new one is fetched. The
//! endpoint is configurable (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, as the
//! AWS SDKs read it), so a test can serve a fake.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;

/// Where the metadata service answers on EC2.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// How often notices are polled: AWS recommends every 5 seconds for spot
/// interruptions, which come two minutes ahead.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Session token lifetime asked for (6 h, the most IMDS gives).
const TOKEN_TTL_SECONDS: u64 = 21_600;

/// A token is renewed this long before it would expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// One request's limit: the service is on the instance itself.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer read; metadata values are short.
const BODY_MAX: usize = 64 * 1024;

/// Why the metadata service could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// Not reachable, or it timed out: not on EC2, or IMDS is off.
    #[error("the instance metadata service at {endpoint} is not reachable: {source}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: reqwest::Error,
    },
    /// An answer that is not what IMDS sends.
    #[error("the instance metadata service answered {path} with {status}")]
    Status {
        /// What was asked.
        path: String,
        /// The status.
        status: StatusCode,
    },
    /// A body too large or not UTF-8.
    #[error("the instance metadata service sent a bad body for {0}")]
    Body(String),
}

/// Why the instance is going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A spot interruption: `action` (`terminate`, `stop`, `hibernate`)
    /// at `time` (RFC 3339, UTC).
    Spot {
        /// What EC2 will do.
        action: String,
        /// When.
        time: String,
    },
    /// Auto Scaling is terminating the instance (scale-in, or a health
    /// check), held by a lifecycle hook until the worker has drained.
    ScaleIn,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Spot { action, time } => {
                write!(f, "spot interruption notice: {action} at {time}")
            }
            Notice::ScaleIn => f.write_str("Auto Scaling is terminating this instance"),
        }
    }
}

#[derive(Deserialize)]
struct InstanceAction {
    action: String,
    time: String,
}

/// A client of one instance's metadata service.
#[derive(Debug)]
pub struct Imds {
    client: reqwest::Client,
    endpoint: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl Imds {
    /// A client of the service at `endpoint` (`http://169.254.169.254`).
    pub fn new(endpoint: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            // IMDS answers directly; a proxy from the environment would
            // break it (the AWS SDKs bypass proxies for it too).
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: Mutex::new(None),
        }
    }

    /// The endpoint from `AWS_EC2_METADATA_SERVICE_ENDPOINT`, or EC2's.
    pub fn from_env() -> Self {
        let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
        Self::new(&endpoint)
    }

    /// The instance id (`i-0abc...`).
    pub async fn instance_id(&self) -> Result<String, ImdsError> {
        let path = "/latest/meta-data/instance-id";
        self.get(path)
            .await?
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ImdsError::Status {
                path: path.to_owned(),
                status: StatusCode::NOT_FOUND,
            })
    }

    /// The notice that the instance is going away, if one has been given.
    pub async fn notice(&self) -> Result<Option<Notice>, ImdsError> {
        if let Some(body) = self.get("/latest/meta-data/spot/instance-action").await? {
            let action: InstanceAction = serde_json::from_str(&body)
                .map_err(|_| ImdsError::Body("spot/instance-action".to_owned()))?;
            return Ok(Some(Notice::Spot {
                action: action.action,
                time: action.time,
            }));
        }
        let state = self
            .get("/latest/meta-data/autoscaling/target-lifecycle-state")
            .await?;
        Ok(state
            .filter(|s| s.trim() == "Terminated")
            .map(|_| Notice::ScaleIn))
    }

    /// Polls for a notice every `every` until one comes. A service that
    /// cannot be read is logged and asked again: a worker that cannot see
    /// notices keeps working and still drains on SIGTERM.
    pub async fn watch(&self, every: Duration) -> Notice {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            match self.notice().await {
                Ok(Some(notice)) => return notice,
                Ok(None) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read interruption notices; will keep trying");
                    }
                    failing = true;
                }
            }
        }
    }

    /// GETs `path` with the session token: `None` for 404 (the notice
    /// paths are 404 until there is a notice).
    async fn get(&self, path: &str) -> Result<Option<String>, ImdsError> {
        for renewed in [false, true] {
            let token = self.token(renewed).await?;
            let response = self
                .client
                .get(format!("{}{path}", self.endpoint))
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await
                .map_err(|source| self.unreachable(source))?;
            match response.status() {
                StatusCode::OK => return body(response, path).await.map(Some),
                StatusCode::NOT_FOUND => return Ok(None),
                // The token expired early (or the service restarted).
                StatusCode::UNAUTHORIZED if !renewed => continue,
                status => {
                    return Err(ImdsError::Status {
                        path: path.to_owned(),
                        status,
                    });
                }
            }
        }
        Err(ImdsError::Status {
            path: path.to_owned(),
            status: StatusCode::UNAUTHORIZED,
        })
    }

    /// The session token, fetched again when `renew` or near its expiry.
    async fn token(&self, renew: bool) -> Result<String, ImdsError> {
        if !renew
            && let Ok(cached) = self.token.lock()
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() + TOKEN_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let path = "/latest/api/token";
        let response = self
            .client
            .put(format!("{}{path}", self.endpoint))
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL_SECONDS.to_string(),
            )
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        if response.status() != StatusCode::OK {
            return Err(ImdsError::Status {
                path: path.to_owned(),
                status: response.status(),
            });
        }
        let token = body(response, path).await?.trim().to_owned();
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some((
                token.clone(),
                Instant::now() + Duration::from_secs(TOKEN_TTL_SECONDS),
            ));
        }
        Ok(token)
    }

    fn unreachable(&self, source: reqwest::Error) -> ImdsError {
        ImdsError::Unreachable {
            endpoint: self.endpoint.clone(),
            source,
        }
    }
}

async fn body(response: reqwest::Response, path: &str) -> Result<String, ImdsError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|_| ImdsError::Body(path.to_owned()))?;
    if bytes.len() > BODY_MAX {
        return Err(ImdsError::Body(path.to_owned()));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| ImdsError::Body(path.to_owned()))
}
