//! Pieces of the HTML reports data jobs write: text escaping and inline
//! SVG charts, so a report is one self-contained file.

/// `text` safe inside HTML elements and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A horizontal bar chart as inline SVG: one bar per (name, value), values
/// in `[0, max]`; `flagged` bars are drawn in the warning colour.
pub fn bars(rows: &[(String, f64, bool)], max: f64) -> String {
    const ROW: usize = 22;
    const LABEL: usize = 260;
    const WIDTH: usize = 420;
    let height = rows.len() * ROW + 4;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">",
        LABEL + WIDTH + 60
    );
    for (i, (name, value, flagged)) in rows.iter().enumerate() {
        let y = i * ROW + 2;
        let w = if max > 0.0 {
            (value / max).clamp(0.0, 1.0) * WIDTH as f64
        } else {
            0.0
        };
        let colour = if *flagged { "#c0392b" } else { "#2e86c1" };
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"{LABEL}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 14,
            escape(name),
            ROW - 6,
            LABEL as f64 + w + 4.0,
            y + 14,
            if max <= 1.0 { format!("{value:.2}") } else { format!("{value:.0}") },
        ));
    }
    svg.push_str("</svg>");
    svg
}
