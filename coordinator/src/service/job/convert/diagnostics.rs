//! A rejected spec's diagnostics on the wire: as `Diagnostic` messages,
//! a size-bounded `DiagnosticList` for the error metadata, and a readable
//! status message.

use drover_proto::v1::{Diagnostic, DiagnosticList, Severity};
use prost::Message;

/// The wire twin of a spec diagnostic.
pub fn diagnostic(d: &drover_jobspecs::Diagnostic) -> Diagnostic {
    Diagnostic {
        file: d.file.clone(),
        line: d.line,
        column: d.column,
        severity: match d.severity {
            drover_jobspecs::Severity::Error => Severity::Error,
            drover_jobspecs::Severity::Warning => Severity::Warning,
        } as i32,
        message: d.message.clone(),
        hint: d.hint.clone().unwrap_or_default(),
        path: d.path.clone(),
    }
}

/// Encodes a `DiagnosticList` of at most about `max_bytes`, dropping
/// trailing diagnostics (and setting `truncated`) to fit.
pub fn encode_diagnostic_list(diagnostics: &[Diagnostic], max_bytes: usize) -> Vec<u8> {
    let mut list = DiagnosticList::default();
    // The `truncated` flag takes two bytes: kept free for it.
    let mut room = max_bytes.saturating_sub(2);
    for d in diagnostics {
        let entry = prost::encoding::message::encoded_len(1, d);
        if entry > room {
            list.truncated = true;
            break;
        }
        room -= entry;
        list.diagnostics.push(d.clone());
    }
    list.encode_to_vec()
}

/// A readable rendering of the diagnostics for a status message, at most
/// `max_bytes` long.
pub fn render_diagnostics(
    source: &str,
    diagnostics: &[drover_jobspecs::Diagnostic],
    max_bytes: usize,
) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == drover_jobspecs::Severity::Error)
        .count();
    let mut out = format!(
        "invalid job spec: {errors} error{}\n",
        if errors == 1 { "" } else { "s" }
    );
    for (i, d) in diagnostics.iter().enumerate() {
        let rendered = d.render(source);
        if out.len() + rendered.len() > max_bytes {
            let rest = format!(
                "... and {} more in the {} metadata",
                diagnostics.len() - i,
                drover_proto::DIAGNOSTICS_METADATA_KEY
            );
            if out.len() + rest.len() <= max_bytes {
                out.push_str(&rest);
            }
            break;
        }
        out.push_str(&rendered);
    }
    if out.len() > max_bytes {
        let mut end = max_bytes;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}
