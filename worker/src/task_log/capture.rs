//! Copies the tracing events of a running attempt into its log: every
//! event inside the attempt's `task` span (the executor's own messages,
//! retries, object store warnings) becomes one line: time, level, target,
//! message and fields. Which levels reach it is the installer's filter
//! (`drover` gives this layer `info`, apart from stderr's `DROVER_LOG`).
//!
//! The layer is installed once with the process's subscriber ([`layer`]).
//! The runner hands each attempt's log over with [`hand_over`] and names
//! the returned number in its span's [`LOG_FIELD`]; the layer keeps the log
//! in that span's extensions, so it goes when the span closes, and
//! subscribers never share a log (numbers are unique in the process).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::AttemptLog;

/// The span field naming the log handed over for that span.
pub const LOG_FIELD: &str = "attempt_log";

/// Logs handed over whose span has not been created yet.
static HANDED_OVER: LazyLock<Mutex<HashMap<u64, AttemptLog>>> = LazyLock::new(Default::default);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A log waiting for its span; taken back when dropped, so a log whose span
/// no subscriber recorded is not kept.
#[derive(Debug)]
pub struct HandedOver(u64);

impl HandedOver {
    /// The number to record in the span's [`LOG_FIELD`].
    pub fn number(&self) -> u64 {
        self.0
    }
}

impl Drop for HandedOver {
    fn drop(&mut self) {
        if let Ok(mut waiting) = HANDED_OVER.lock() {
            waiting.remove(&self.0);
        }
    }
}

/// Hands `log` over to the span that will name the returned number in its
/// [`LOG_FIELD`]; events inside that span are then copied to `log`. Keep
/// the guard until the span exists.
pub fn hand_over(log: &AttemptLog) -> HandedOver {
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut waiting) = HANDED_OVER.lock() {
        waiting.insert(number, log.clone());
    }
    HandedOver(number)
}

/// The layer that copies attempts' events into their logs.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    AttemptLogLayer
}

struct AttemptLogLayer;

impl<S> Layer<S> for AttemptLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut number = LogNumber(None);
        attrs.record(&mut number);
        let Some(number) = number.0 else {
            return;
        };
        let log = HANDED_OVER.lock().ok().and_then(|mut w| w.remove(&number));
        if let (Some(log), Some(span)) = (log, ctx.span(id)) {
            span.extensions_mut().insert(log);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let log = scope
            .into_iter()
            .find_map(|span| span.extensions().get::<AttemptLog>().cloned());
        if let Some(log) = log {
            log.line(&format_event(event));
        }
    }
}

/// Reads [`LOG_FIELD`] from a new span.
struct LogNumber(Option<u64>);

impl Visit for LogNumber {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == LOG_FIELD {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// `<time> <LEVEL> <target>: <message> key=value...`, in UTC.
fn format_event(event: &Event<'_>) -> String {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut line = format!(
        "{} {:>5} {}: {}",
        super::buffer::now(),
        meta.level(),
        meta.target(),
        fields.message
    );
    line.push_str(&fields.rest);
    line
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn events_inside_an_attempts_span_reach_its_log_and_no_other() {
        let subscriber = tracing_subscriber::registry().with(layer());
        let log = AttemptLog::default();
        let other = AttemptLog::default();
        tracing::subscriber::with_default(subscriber, || {
            let guard = hand_over(&log);
            let span =
                tracing::info_span!("task", task_id = "j1/0/0", attempt_log = guard.number());
            let other_guard = hand_over(&other);
            let _unrelated = tracing::info_span!(
                "task",
                task_id = "j1/0/1",
                attempt_log = other_guard.number()
            );
            span.in_scope(|| {
                tracing::info!(rows = 3, path = "a b", "wrote part");
                // Nested spans still belong to the attempt.
                tracing::info_span!("upload").in_scope(|| tracing::warn!("retrying"));
            });
            tracing::info!("outside every attempt");
        });
        let text = String::from_utf8(log.snapshot().0).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(
                " INFO drover_worker::task_log::capture::tests: wrote part rows=3 path=\"a b\""
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(" WARN ") && lines[1].ends_with(": retrying"));
        assert_eq!(other.snapshot().1, 0);
    }

    #[test]
    fn a_log_no_span_took_is_let_go() {
        let log = AttemptLog::default();
        let number = hand_over(&log).number();
        assert!(!HANDED_OVER.lock().unwrap().contains_key(&number));
    }
}
