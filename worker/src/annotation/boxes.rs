//! Consensus for bounding boxes: boxes that several annotators drew around
//! the same object (same image, same category, overlapping enough) are
//! clustered by intersection over union and fused into one box, the mean of
//! the cluster's corners; a cluster drawn by fewer than `min_annotators`
//! different annotators is dropped as a probable false positive.

/// An axis-aligned box in pixels: top-left corner, width and height (the
/// COCO convention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxXywh {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width, at least 0.
    pub w: f64,
    /// Height, at least 0.
    pub h: f64,
}

impl BoxXywh {
    /// Area, 0 for a degenerate box.
    pub fn area(&self) -> f64 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union with `other`, in `[0, 1]`; 0 when both are
    /// empty.
    pub fn iou(&self, other: &BoxXywh) -> f64 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.w).min(other.x + other.w);
        let bottom = (self.y + self.h).min(other.y + other.h);
        let inter = (right - left).max(0.0) * (bottom - top).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// One annotator's box on one image, in one category.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawnBox {
    /// Who drew it, from 0.
    pub annotator: u32,
    /// The box.
    pub bbox: BoxXywh,
}

/// A fused box and who supported it.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedBox {
    /// The mean of the cluster's boxes.
    pub bbox: BoxXywh,
    /// Distinct annotators whose boxes are in the cluster, sorted.
    pub annotators: Vec<u32>,
    /// Mean IoU of the cluster's boxes with the fused box: how tightly the
    /// annotators agreed.
    pub agreement: f64,
}

/// Clusters the boxes of one image and category and fuses each cluster.
///
/// Greedy and deterministic: boxes are taken largest first (ties by
/// annotator, then position), each joins the cluster whose current fused
/// box it overlaps most, if that IoU is at least `iou_threshold` and the
/// cluster has no box from the same annotator yet (one annotator's two
/// boxes are two objects); otherwise it starts a cluster. Clusters with
/// fewer than `min_annotators` annotators are dropped. The result is sorted
/// by position.
pub fn fuse(boxes: &[DrawnBox], iou_threshold: f64, min_annotators: usize) -> Vec<FusedBox> {
    let mut order: Vec<&DrawnBox> = boxes.iter().collect();
    order.sort_by(|a, b| {
        b.bbox
            .area()
            .total_cmp(&a.bbox.area())
            .then(a.annotator.cmp(&b.annotator))
            .then(a.bbox.x.total_cmp(&b.bbox.x))
            .then(a.bbox.y.total_cmp(&b.bbox.y))
    });
    let mut clusters: Vec<(Vec<DrawnBox>, BoxXywh)> = Vec::new();
    for drawn in order {
        let best = clusters
            .iter()
            .enumerate()
            .filter(|(_, (members, _))| members.iter().all(|m| m.annotator != drawn.annotator))
            .map(|(i, (_, fused))| (i, fused.iou(&drawn.bbox)))
            .filter(|(_, iou)| *iou >= iou_threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        match best {
            Some((i, _)) => {
                clusters[i].0.push(*drawn);
                clusters[i].1 = mean_box(&clusters[i].0);
            }
            None => clusters.push((vec![*drawn], drawn.bbox)),
        }
    }
    let mut fused: Vec<FusedBox> = clusters
        .into_iter()
        .filter_map(|(members, bbox)| {
            let mut annotators: Vec<u32> = members.iter().map(|m| m.annotator).collect();
            annotators.sort_unstable();
            annotators.dedup();
            if annotators.len() < min_annotators {
                return None;
            }
            let agreement =
                members.iter().map(|m| m.bbox.iou(&bbox)).sum::<f64>() / members.len() as f64;
            Some(FusedBox {
                bbox,
                annotators,
                agreement,
            })
        })
        .collect();
    fused.sort_by(|a, b| {
        a.bbox
            .y
            .total_cmp(&b.bbox.y)
            .then(a.bbox.x.total_cmp(&b.bbox.x))
    });
    fused
}

fn mean_box(members: &[DrawnBox]) -> BoxXywh {
    let n = members.len() as f64;
    let (mut x, mut y, mut right, mut bottom) = (0.0, 0.0, 0.0, 0.0);
    for m in members {
        x += m.bbox.x;
        y += m.bbox.y;
        right += m.bbox.x + m.bbox.w;
        bottom += m.bbox.y + m.bbox.h;
    }
    let (x, y) = (x / n, y / n);
    BoxXywh {
        x,
        y,
        w: right / n - x,
        h: bottom / n - y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(annotator: u32, x: f64, y: f64, w: f64, h: f64) -> DrawnBox {
        DrawnBox {
            annotator,
            bbox: BoxXywh { x, y, w, h },
        }
    }

    #[test]
    fn iou_of_known_overlaps() {
        let a = BoxXywh {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        // Half of each: intersection 50, union 150.
        let shifted = BoxXywh { x: 5.0, ..a };
        assert!((a.iou(&shifted) - 1.0 / 3.0).abs() < 1e-12);
        let apart = BoxXywh { x: 20.0, ..a };
        assert_eq!(a.iou(&apart), 0.0);
        let empty = BoxXywh {
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: 0.0,
        };
        assert_eq!(empty.iou(&empty), 0.0);
    }

    #[test]
    fn three_annotators_two_objects_and_a_stray_box() {
        let boxes = [
            // Object 1, drawn by 0, 1 and 2 with a little noise.
            b(0, 10.0, 10.0, 50.0, 40.0),
            b(1, 12.0, 9.0, 49.0, 42.0),
            b(2, 8.0, 11.0, 52.0, 39.0),
            // Object 2, by 0 and 2 (1 missed it).
            b(0, 200.0, 100.0, 30.0, 30.0),
            b(2, 202.0, 101.0, 29.0, 31.0),
            // A stray box only annotator 1 drew.
            b(1, 400.0, 400.0, 20.0, 20.0),
        ];
        let fused = fuse(&boxes, 0.5, 2);
        assert_eq!(fused.len(), 2, "{fused:?}");
        assert_eq!(fused[0].annotators, vec![0, 1, 2]);
        assert!((fused[0].bbox.x - 10.0).abs() < 1e-9);
        // Mean right edge (60 + 61 + 60) / 3, mean left edge 10.
        assert!(
            (fused[0].bbox.w - (181.0 / 3.0 - 10.0)).abs() < 1e-9,
            "{:?}",
            fused[0]
        );
        assert!(fused[0].agreement > 0.85);
        assert_eq!(fused[1].annotators, vec![0, 2]);
        // With one annotator enough, the stray box survives too.
        assert_eq!(fuse(&boxes, 0.5, 1).len(), 3);
    }

    #[test]
    fn one_annotators_two_overlapping_boxes_stay_two_objects() {
        let boxes = [b(0, 0.0, 0.0, 10.0, 10.0), b(0, 1.0, 1.0, 10.0, 10.0)];
        assert_eq!(fuse(&boxes, 0.3, 1).len(), 2);
    }

    #[test]
    fn the_result_does_not_depend_on_input_order() {
        let mut boxes = vec![
            b(0, 10.0, 10.0, 50.0, 40.0),
            b(1, 12.0, 9.0, 49.0, 42.0),
            b(2, 200.0, 100.0, 30.0, 30.0),
            b(0, 202.0, 101.0, 29.0, 31.0),
        ];
        let first = fuse(&boxes, 0.5, 1);
        boxes.reverse();
        assert_eq!(fuse(&boxes, 0.5, 1), first);
    }
}
