//! Joining `tracing` spans to a job's trace when spans are exported over
//! OTLP: a span is made the child of the remote span a `traceparent`
//! names, and a span's own context is handed on as a `traceparent`, so a
//! job's trace reads submit → lease → attempt → completion across the
//! coordinator and the workers.
//!
//! Without an OpenTelemetry layer installed (export off, the default) both
//! are no-ops: the trace id still travels in `traceparent` and in every
//! log line, as before.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace::TraceParent;

/// Whether this process exports spans; set once by whoever installs the
/// exporter, so hot paths make the spans only an exporter reads when one
/// does.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Records that spans are exported from now on.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Makes `span` a child of the span `traceparent` names. Call it before
/// the span is first entered; a malformed or empty value leaves the span
/// as it was.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let Ok(parent) = TraceParent::parse(traceparent) else {
        return;
    };
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&parent.trace_id()),
        SpanId::from_hex(&parent.parent_id()),
    ) else {
        return;
    };
    let flags = if parent.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    // Fails only when no OpenTelemetry layer is installed (export off) or
    // the span already started, in which case it keeps its own parent.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The `traceparent` naming `span` itself, for its children elsewhere;
/// `None` when spans are not exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let own = context.span();
    let sc = own.span_context();
    if !sc.is_valid() {
        return None;
    }
    let trace = sc.trace_id().to_bytes();
    let id = sc.span_id().to_bytes();
    TraceParent::new(trace, id, sc.trace_flags().to_u8()).map(|t| t.to_string())
}
