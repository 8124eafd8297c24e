//! Span export over OTLP/gRPC for `drover coordinator`, `drover worker` and
//! `drover dev`, configured by the standard OpenTelemetry variables and off
//! unless one names an endpoint:
//!
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (`http://collector:4317`) turns it on; `OTEL_SDK_DISABLED=true` keeps
//!   it off;
//! - `OTEL_SERVICE_NAME` names the process (default `drover-coordinator`,
//!   `drover-worker` or `drover-dev`), `OTEL_RESOURCE_ATTRIBUTES` adds to
//!   it; `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT` and
//!   `..._COMPRESSION` and `OTEL_TRACES_SAMPLER` work as documented by
//!   OpenTelemetry.
//!
//! Only Drover's own spans at `info` and above are exported (not the
//! transport's), in batches from a thread of the SDK's; the spans of one
//! job are joined into one trace by [`drover_proto::spans`].

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

/// How long the last spans may take to leave at exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The exporter, while one runs; flushes on [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Whether the environment asks for export.
fn requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT")) && !disabled
}

impl Telemetry {
    /// Starts the exporter when the environment asks for one. Runs inside
    /// a Tokio runtime (the gRPC channel is created lazily on it). A bad
    /// configuration is reported on stderr and leaves export off: tracing
    /// never stops a coordinator or a worker.
    pub fn start(service: &str) -> Self {
        if !requested() {
            return Self::default();
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: OTLP span export is off: {e}");
                return Self::default();
            }
        };
        // The resource builder reads OTEL_SERVICE_NAME and
        // OTEL_RESOURCE_ATTRIBUTES; a name set here would override them.
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
            resource = resource.with_service_name(service.to_owned());
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        drover_proto::spans::set_exporting();
        Self {
            provider: Some(provider),
        }
    }

    /// The layer that hands Drover's spans to the exporter; `None` when
    /// export is off.
    pub fn layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let tracer = self.provider.as_ref()?.tracer("drover");
        let ours = Targets::new()
            .with_target("drover", tracing::Level::INFO)
            .with_target("drover_coordinator", tracing::Level::INFO)
            .with_target("drover_worker", tracing::Level::INFO);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(ours),
        )
    }

    /// Sends what is buffered and stops; call before the runtime ends.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            eprintln!("warning: OTLP span export did not finish: {e}");
        }
    }
}
