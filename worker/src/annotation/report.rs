//! The export's quality report: per project, agreement (Krippendorff's
//! alpha and Fleiss' kappa), the consensus label distribution, and per
//! annotator how often they agree with the consensus and whether they look
//! like a spammer. Written as JSON for pipelines and as one self-contained
//! HTML page (inline SVG charts, no scripts, no external assets) for people.

use serde::Serialize;

use crate::html::{bars, escape};

/// An annotator whose spammer score is below this is flagged: their
/// answers barely depend on the truth. Careful annotators score near 1 and
/// middling ones (65% right over four classes) near 0.3; random answers
/// score near 0.
pub const SPAMMER_SCORE_MAX: f64 = 0.1;

/// A box annotator whose F1 against the consensus boxes is below this is
/// flagged: most of what they draw is not there, or most of what is there
/// they do not draw.
pub const BOX_SPAMMER_F1_MAX: f64 = 0.25;

/// How one annotator did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnotatorQuality {
    /// The annotator's pseudonym (never the raw id).
    pub annotator: String,
    /// Labels they gave.
    pub votes: u64,
    /// Classification: share of their labels equal to the consensus, over
    /// items that have one. Boxes: share of their boxes in an accepted
    /// object (precision against the consensus).
    pub agreement_with_consensus: Option<f64>,
    /// Boxes only: share of the accepted objects on their images that they
    /// drew.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// Classification: their spammer score from their confusion matrix
    /// against the consensus (see `consensus::spammer_score`). Boxes: their
    /// F1 against the consensus.
    pub spammer_score: f64,
    /// Whether the score is below [`SPAMMER_SCORE_MAX`] (boxes:
    /// [`BOX_SPAMMER_F1_MAX`]).
    pub spammer: bool,
}

/// How often a label won.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelCount {
    /// The label's name.
    pub label: String,
    /// Items whose consensus it is.
    pub items: u64,
}

/// One project's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectQuality {
    /// The project.
    pub project: String,
    /// `classification` or `bbox`.
    pub task_type: String,
    /// The consensus method (`majority`, `dawid_skene`, `iou_fusion`).
    pub consensus: String,
    /// Items that passed the export's filters.
    pub items: u64,
    /// Of those, left out for having too few annotators.
    pub excluded_items: u64,
    /// Items with a consensus label.
    pub labelled_items: u64,
    /// Labels given.
    pub votes: u64,
    /// Krippendorff's alpha (nominal); `None` when undefined.
    pub krippendorff_alpha: Option<f64>,
    /// Fleiss' kappa; `None` when undefined.
    pub fleiss_kappa: Option<f64>,
    /// Consensus labels by how often they won, most first.
    pub labels: Vec<LabelCount>,
    /// Per annotator, by pseudonym.
    pub annotators: Vec<AnnotatorQuality>,
}

/// Text safe inside HTML elements and attributes.
fn figure(value: Option<f64>) -> String {
    value.map_or_else(|| "undefined".to_owned(), |v| format!("{v:.3}"))
}

/// The report as one HTML page.
pub fn render_html(title: &str, projects: &[ProjectQuality]) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}th{{background:#f4f4f4}}td:first-child{{text-align:left}}.spammer{{color:#c0392b;font-weight:bold}}</style></head><body><h1>{0}</h1>\n",
        escape(title)
    );
    for p in projects {
        let boxes = p.task_type == "bbox";
        let (unit, given, agreement_on) = if boxes {
            (
                "with at least one consensus object",
                "boxes",
                "the number of boxes of each category each annotator drew on an image",
            )
        } else {
            ("with a consensus label", "labels", "the class")
        };
        html.push_str(&format!(
            "<h2>Project {} ({})</h2>\n<p>{} items, {} left out for too few annotators; {} {unit}, by {}; {} {given}. Agreement on {agreement_on}: Krippendorff's alpha (nominal) <b>{}</b>; Fleiss' kappa <b>{}</b>.</p>\n",
            escape(&p.project),
            escape(&p.task_type),
            p.items,
            p.excluded_items,
            p.labelled_items,
            escape(&p.consensus),
            p.votes,
            figure(p.krippendorff_alpha),
            figure(p.fleiss_kappa),
        ));
        html.push_str("<h3>Consensus labels</h3>\n");
        let max = p.labels.iter().map(|l| l.items).max().unwrap_or(0) as f64;
        let rows: Vec<(String, f64, bool)> = p
            .labels
            .iter()
            .map(|l| (l.label.clone(), l.items as f64, false))
            .collect();
        html.push_str(&bars(&rows, max));
        html.push_str("\n<h3>Annotators: agreement with the consensus</h3>\n");
        let rows: Vec<(String, f64, bool)> = p
            .annotators
            .iter()
            .map(|a| {
                (
                    a.annotator.clone(),
                    a.agreement_with_consensus.unwrap_or(0.0),
                    a.spammer,
                )
            })
            .collect();
        html.push_str(&bars(&rows, 1.0));
        let (agreement, score) = if boxes {
            ("Precision</th><th>Recall", "F1")
        } else {
            ("Agreement", "Spammer score")
        };
        html.push_str(&format!("\n<table><tr><th>Annotator</th><th>{}</th><th>{agreement}</th><th>{score}</th><th></th></tr>\n", if boxes { "Boxes" } else { "Labels" }));
        for a in &p.annotators {
            let agreement = if boxes {
                format!(
                    "{}</td><td>{}",
                    figure(a.agreement_with_consensus),
                    figure(a.recall)
                )
            } else {
                figure(a.agreement_with_consensus)
            };
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{agreement}</td><td>{:.3}</td><td>{}</td></tr>\n",
                escape(&a.annotator),
                a.votes,
                a.spammer_score,
                if a.spammer {
                    "<span class=\"spammer\">likely spammer</span>"
                } else {
                    ""
                },
            ));
        }
        html.push_str("</table>\n");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::consensus::dawid_skene;
    use crate::annotation::stats::classification_quality;
    use crate::annotation::testdata::simulate;

    #[test]
    fn the_report_flags_the_spammers_and_counts_every_label() {
        let skill = [Some(0.9), Some(0.9), Some(0.7), Some(0.7), None, None];
        let (votes, _truth) = simulate(11, 2000, 3, &skill, 4);
        let ds = dawid_skene(&votes);
        let classes: Vec<String> = ["cat", "dog", "<bird>"].map(String::from).to_vec();
        let names: Vec<String> = (0..6).map(|a| format!("a_{a:032x}")).collect();
        let q = classification_quality("p1", "dawid_skene", &votes, &ds.labels, &classes, &names);
        assert_eq!(q.items, 2000);
        assert_eq!(
            q.labels.iter().map(|l| l.items).sum::<u64>(),
            q.labelled_items
        );
        let flagged: Vec<bool> = q.annotators.iter().map(|a| a.spammer).collect();
        assert_eq!(flagged, [false, false, false, false, true, true], "{q:#?}");
        let alpha = q.krippendorff_alpha.unwrap();
        assert!(alpha > 0.0 && alpha < 1.0, "{alpha}");
        let json = serde_json::to_value(&q).unwrap();
        assert!(json["krippendorffAlpha"].is_number());
        assert_eq!(json["annotators"][4]["spammer"], true);

        let html = render_html("Export quality", &[q]);
        assert!(html.contains("<svg") && html.contains("likely spammer"));
        // Names are escaped, and the page loads nothing from elsewhere.
        assert!(html.contains("&lt;bird&gt;") && !html.contains("<bird>"));
        assert!(!html.contains("<script") && !html.contains("src="));
    }
}
