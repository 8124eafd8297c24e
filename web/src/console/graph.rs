//! The picture of a job's DAG: templates placed in columns by stage (left
//! to right, as the work flows) and ordered within a column to keep edges
//! from crossing, so the browser only draws boxes and curves.
//!
//! The ordering is the barycenter heuristic of layered ("Sugiyama") graph
//! drawing: each template moves towards the mean position of its neighbours
//! in the previous column, sweeping right and then left a few times. It is
//! not optimal (that problem is NP-hard) but it untangles the DAGs specs
//! have, and it is deterministic: ties keep the spec's order.

use std::collections::BTreeMap;

use serde::Serialize;

/// Width of a template's box, in pixels.
const NODE_W: f64 = 200.0;
/// Height of a template's box (name, kind, progress bar).
const NODE_H: f64 = 64.0;
/// Space between columns, where the edges run.
const GAP_X: f64 = 72.0;
/// Space between boxes of one column.
const GAP_Y: f64 = 20.0;
/// Space around the drawing.
const MARGIN: f64 = 16.0;
/// Sweeps of the barycenter ordering; more rarely changes anything.
const SWEEPS: usize = 4;

/// One template as the layout needs it.
#[derive(Debug, Clone)]
pub struct Vertex {
    /// Template name, unique within the job.
    pub name: String,
    /// Column: 0 without dependencies, else one more than the deepest
    /// upstream.
    pub stage: u32,
    /// Upstream template names.
    pub depends_on: Vec<String>,
}

/// A placed template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placed {
    /// Template name.
    pub name: String,
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Box width.
    pub w: f64,
    /// Box height.
    pub h: f64,
}

/// A dependency drawn as a curve from the upstream box's right side to the
/// downstream box's left side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Upstream template.
    pub from: String,
    /// Downstream template.
    pub to: String,
    /// SVG path data of the curve.
    pub path: String,
}

/// The whole drawing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    /// Width of the drawing.
    pub width: f64,
    /// Height of the drawing.
    pub height: f64,
    /// Every template, in the order given.
    pub nodes: Vec<Placed>,
    /// Every dependency between two known templates.
    pub edges: Vec<Edge>,
}

/// Lays out `vertices` (in spec or stage order; dependencies on names not
/// among them are ignored).
pub fn layout(vertices: &[Vertex]) -> Layout {
    let index: BTreeMap<&str, usize> = vertices
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    let upstream: Vec<Vec<usize>> = vertices
        .iter()
        .map(|v| {
            v.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); vertices.len()];
    for (i, ups) in upstream.iter().enumerate() {
        for &u in ups {
            downstream[u].push(i);
        }
    }
    let columns = order(vertices, &upstream, &downstream);

    let tallest = columns.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let height = 2.0 * MARGIN + tallest * NODE_H + (tallest - 1.0).max(0.0) * GAP_Y;
    let width = 2.0 * MARGIN
        + columns.len() as f64 * NODE_W
        + (columns.len() as f64 - 1.0).max(0.0) * GAP_X;
    let mut at = vec![(0.0, 0.0); vertices.len()];
    for (c, column) in columns.iter().enumerate() {
        let n = column.len() as f64;
        // Shorter columns are centred against the tallest.
        let used = n * NODE_H + (n - 1.0).max(0.0) * GAP_Y;
        let top = MARGIN + (height - 2.0 * MARGIN - used) / 2.0;
        for (row, &v) in column.iter().enumerate() {
            at[v] = (
                MARGIN + c as f64 * (NODE_W + GAP_X),
                top + row as f64 * (NODE_H + GAP_Y),
            );
        }
    }
    let nodes = vertices
        .iter()
        .zip(&at)
        .map(|(v, &(x, y))| Placed {
            name: v.name.clone(),
            x,
            y,
            w: NODE_W,
            h: NODE_H,
        })
        .collect();
    let mut edges = Vec::new();
    for (to, ups) in upstream.iter().enumerate() {
        for &from in ups {
            let (x1, y1) = (at[from].0 + NODE_W, at[from].1 + NODE_H / 2.0);
            let (x2, y2) = (at[to].0, at[to].1 + NODE_H / 2.0);
            let bend = (x2 - x1) / 2.0;
            edges.push(Edge {
                from: vertices[from].name.clone(),
                to: vertices[to].name.clone(),
                path: format!(
                    "M {x1:.1} {y1:.1} C {:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}",
                    x1 + bend,
                    x2 - bend
                ),
            });
        }
    }
    Layout {
        width,
        height,
        nodes,
        edges,
    }
}

/// The vertices of each column, top to bottom.
fn order(
    vertices: &[Vertex],
    upstream: &[Vec<usize>],
    downstream: &[Vec<usize>],
) -> Vec<Vec<usize>> {
    // A stage is at most the number of templates; the clamp keeps a
    // corrupt one from sizing the columns.
    let column_of = |v: &Vertex| (v.stage as usize).min(vertices.len());
    let depth = vertices.iter().map(column_of).max().map_or(0, |d| d + 1);
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (i, v) in vertices.iter().enumerate() {
        columns[column_of(v)].push(i);
    }
    let mut row = vec![0.0; vertices.len()];
    let place = |columns: &Vec<Vec<usize>>, row: &mut Vec<f64>| {
        for column in columns {
            for (r, &v) in column.iter().enumerate() {
                row[v] = r as f64;
            }
        }
    };
    place(&columns, &mut row);
    for _ in 0..SWEEPS {
        for c in 1..columns.len() {
            sort_by_barycenter(&mut columns[c], upstream, &row);
            place(&columns, &mut row);
        }
        for c in (0..columns.len().saturating_sub(1)).rev() {
            sort_by_barycenter(&mut columns[c], downstream, &row);
            place(&columns, &mut row);
        }
    }
    columns
}

/// Sorts one column by the mean row of each vertex's neighbours; a vertex
/// without neighbours keeps its row, and ties keep the current order.
fn sort_by_barycenter(column: &mut [usize], neighbours: &[Vec<usize>], row: &[f64]) {
    let mut keyed: Vec<(f64, usize, usize)> = column
        .iter()
        .enumerate()
        .map(|(r, &v)| {
            let ns = &neighbours[v];
            let key = if ns.is_empty() {
                r as f64
            } else {
                ns.iter().map(|&n| row[n]).sum::<f64>() / ns.len() as f64
            };
            (key, r, v)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (slot, (_, _, v)) in column.iter_mut().zip(keyed) {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, stage: u32, deps: &[&str]) -> Vertex {
        Vertex {
            name: name.to_owned(),
            stage,
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    fn placed<'a>(l: &'a Layout, name: &str) -> &'a Placed {
        l.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// Edges between adjacent columns that cross: pairs whose ends are in
    /// opposite vertical order.
    fn crossings(l: &Layout) -> usize {
        let ends: Vec<(f64, f64, f64)> = l
            .edges
            .iter()
            .map(|e| {
                let (a, b) = (placed(l, &e.from), placed(l, &e.to));
                (a.x, a.y, b.y)
            })
            .collect();
        let mut n = 0;
        for (i, a) in ends.iter().enumerate() {
            for b in &ends[i + 1..] {
                if a.0 == b.0 && (a.1 - b.1) * (a.2 - b.2) < 0.0 {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn columns_follow_stages_and_boxes_never_overlap() {
        let l = layout(&[
            v("extract", 0, &[]),
            v("clean", 1, &["extract"]),
            v("stats", 1, &["extract"]),
            v("publish", 2, &["clean", "stats"]),
        ]);
        assert!(placed(&l, "extract").x < placed(&l, "clean").x);
        assert_eq!(placed(&l, "clean").x, placed(&l, "stats").x);
        assert!(placed(&l, "stats").x < placed(&l, "publish").x);
        for (i, a) in l.nodes.iter().enumerate() {
            assert!(a.x >= 0.0 && a.y >= 0.0);
            assert!(a.x + a.w <= l.width && a.y + a.h <= l.height);
            for b in &l.nodes[i + 1..] {
                let apart =
                    a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
        assert_eq!(l.edges.len(), 4);
        // Every edge runs left to right, from the upstream's right side.
        for e in &l.edges {
            assert!(placed(&l, &e.from).x < placed(&l, &e.to).x, "{e:?}");
        }
    }

    #[test]
    fn two_chains_given_crosswise_are_drawn_without_crossings() {
        // Spec order puts b's child above a's child: drawn naively, the two
        // edges cross.
        let vertices = [
            v("a", 0, &[]),
            v("b", 0, &[]),
            v("b2", 1, &["b"]),
            v("a2", 1, &["a"]),
            v("b3", 2, &["b2"]),
            v("a3", 2, &["a2"]),
        ];
        let l = layout(&vertices);
        assert_eq!(crossings(&l), 0, "{l:?}");
        assert!(placed(&l, "a2").y < placed(&l, "b2").y);
    }

    #[test]
    fn the_layout_is_deterministic_and_ignores_unknown_dependencies() {
        let vertices = [
            v("x", 0, &["not-a-template"]),
            v("y", 1, &["x"]),
            v("z", 1, &["x"]),
        ];
        let first = layout(&vertices);
        assert_eq!(first, layout(&vertices));
        assert_eq!(first.edges.len(), 2);
        // Ties keep the spec's order.
        assert!(placed(&first, "y").y < placed(&first, "z").y);
    }

    #[test]
    fn an_empty_job_draws_nothing() {
        let l = layout(&[]);
        assert!(l.nodes.is_empty() && l.edges.is_empty());
    }
}
