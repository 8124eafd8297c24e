//! Convergence: once quiet, every replica's state machine is byte-for-byte
//! the same (equal SHA-256 of the snapshot encoding at one applied index).

use crate::observation::Observation;

pub const NAME: &str = "all replicas converge to the same state";

pub fn check(o: &Observation) -> Vec<String> {
    let mut out = Vec::new();
    for r in o.replicas.iter().filter(|r| !r.error.is_empty()) {
        out.push(format!("node {} did not answer: {}", r.node_id, r.error));
    }
    if !out.is_empty() {
        return out;
    }
    if !o.replicas_settled {
        out.push(format!(
            "the replicas never reported one applied index: {:?}",
            o.replicas
                .iter()
                .map(|r| (r.node_id, r.applied_index))
                .collect::<Vec<_>>()
        ));
        return out;
    }
    if let Some(first) = o.replicas.first() {
        for r in &o.replicas[1..] {
            if r.sha256 != first.sha256 {
                out.push(format!(
                    "at index {} node {} has state {} but node {} has {}",
                    r.applied_index, first.node_id, first.sha256, r.node_id, r.sha256
                ));
            }
        }
    }
    out
}
