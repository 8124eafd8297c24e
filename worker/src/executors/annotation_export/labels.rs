//! The export's `labels` table: one row per consensus label. A
//! classification item has one (its class); an image has one per accepted
//! object, or one with a null label when no object was accepted, so every
//! exported image is listed.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `project` | string | project |
//! | `task_type` | string | `classification` or `bbox` |
//! | `item_id` | string | item (image) |
//! | `image_width`, `image_height` | int32, null | image size in pixels |
//! | `label` | string, null | consensus class or object category |
//! | `confidence` | float64, null | Dawid-Skene posterior, majority share, or share of the image's annotators who drew the object |
//! | `bbox_x`, `bbox_y`, `bbox_w`, `bbox_h` | float64, null | fused box, COCO convention |
//! | `annotators` | int32 | annotators who labelled the item |
//! | `support` | int32 | of those, how many gave this label (drew this object) |
//! | `vote_annotators` | list of string | pseudonyms of the item's voters (object: its annotators) |
//! | `vote_labels` | list of string | each one's label, in the same order |

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int32Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

/// One consensus label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    /// Item.
    pub item_id: String,
    /// Image size.
    pub width: Option<i32>,
    /// Image size.
    pub height: Option<i32>,
    /// The label; `None` for an image with no accepted object.
    pub label: Option<String>,
    /// How sure.
    pub confidence: Option<f64>,
    /// Fused box.
    pub bbox: Option<[f64; 4]>,
    /// Annotators of the item.
    pub annotators: i32,
    /// Of whom agreeing with this label.
    pub support: i32,
    /// (pseudonym, label) of each vote.
    pub votes: Vec<(String, Option<String>)>,
}

/// The table's schema.
pub fn schema() -> SchemaRef {
    let list = |name: &str| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("project", DataType::Utf8, false),
        Field::new("task_type", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("image_width", DataType::Int32, true),
        Field::new("image_height", DataType::Int32, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("confidence", DataType::Float64, true),
        Field::new("bbox_x", DataType::Float64, true),
        Field::new("bbox_y", DataType::Float64, true),
        Field::new("bbox_w", DataType::Float64, true),
        Field::new("bbox_h", DataType::Float64, true),
        Field::new("annotators", DataType::Int32, false),
        Field::new("support", DataType::Int32, false),
        list("vote_annotators"),
        list("vote_labels"),
    ]))
}

/// Rows of one project as a batch.
pub fn batch(
    schema: &SchemaRef,
    project: &str,
    task_type: &str,
    rows: &[LabelRow],
) -> Result<RecordBatch, ArrowError> {
    let mut project_b = StringBuilder::new();
    let mut type_b = StringBuilder::new();
    let mut item = StringBuilder::new();
    let mut width = Int32Builder::new();
    let mut height = Int32Builder::new();
    let mut label = StringBuilder::new();
    let mut confidence = Float64Builder::new();
    let mut bbox: [Float64Builder; 4] = std::array::from_fn(|_| Float64Builder::new());
    let mut annotators = Int32Builder::new();
    let mut support = Int32Builder::new();
    let mut who = ListBuilder::new(StringBuilder::new());
    let mut said = ListBuilder::new(StringBuilder::new());
    for r in rows {
        project_b.append_value(project);
        type_b.append_value(task_type);
        item.append_value(&r.item_id);
        width.append_option(r.width);
        height.append_option(r.height);
        label.append_option(r.label.as_deref());
        confidence.append_option(r.confidence);
        for (b, v) in bbox
            .iter_mut()
            .zip(r.bbox.map_or([None; 4], |b| b.map(Some)))
        {
            b.append_option(v);
        }
        annotators.append_value(r.annotators);
        support.append_value(r.support);
        for (a, l) in &r.votes {
            who.values().append_value(a);
            said.values().append_option(l.as_deref());
        }
        who.append(true);
        said.append(true);
    }
    let [x, y, w, h] = &mut bbox;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(project_b.finish()),
        Arc::new(type_b.finish()),
        Arc::new(item.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(label.finish()),
        Arc::new(confidence.finish()),
        Arc::new(x.finish()),
        Arc::new(y.finish()),
        Arc::new(w.finish()),
        Arc::new(h.finish()),
        Arc::new(annotators.finish()),
        Arc::new(support.finish()),
        Arc::new(who.finish()),
        Arc::new(said.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// The rows of a batch of this table.
pub fn rows(batch: &RecordBatch) -> Result<Vec<LabelRow>, ArrowError> {
    let col = |i: usize| batch.column(i);
    let item = col(2).as_string::<i32>();
    let width = col(3).as_primitive::<Int32Type>();
    let height = col(4).as_primitive::<Int32Type>();
    let label = col(5).as_string::<i32>();
    let confidence = col(6).as_primitive::<Float64Type>();
    let bbox: Vec<_> = (7..11)
        .map(|i| col(i).as_primitive::<Float64Type>())
        .collect();
    let annotators = col(11).as_primitive::<Int32Type>();
    let support = col(12).as_primitive::<Int32Type>();
    let who = col(13).as_list::<i32>();
    let said = col(14).as_list::<i32>();
    let opt_i32 =
        |a: &arrow_array::PrimitiveArray<Int32Type>, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let names = who.value(i);
        let names = names.as_string::<i32>();
        let labels = said.value(i);
        let labels = labels.as_string::<i32>();
        let votes = (0..names.len())
            .map(|j| {
                (
                    names.value(j).to_owned(),
                    (!labels.is_null(j)).then(|| labels.value(j).to_owned()),
                )
            })
            .collect();
        out.push(LabelRow {
            item_id: item.value(i).to_owned(),
            width: opt_i32(width, i),
            height: opt_i32(height, i),
            label: (!label.is_null(i)).then(|| label.value(i).to_owned()),
            confidence: (!confidence.is_null(i)).then(|| confidence.value(i)),
            bbox: (!bbox[0].is_null(i)).then(|| {
                [
                    bbox[0].value(i),
                    bbox[1].value(i),
                    bbox[2].value(i),
                    bbox[3].value(i),
                ]
            }),
            annotators: annotators.value(i),
            support: support.value(i),
            votes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_batch() {
        let rows = vec![
            LabelRow {
                item_id: "img-1".into(),
                width: Some(640),
                height: Some(480),
                label: Some("car".into()),
                confidence: Some(0.75),
                bbox: Some([1.0, 2.0, 3.0, 4.0]),
                annotators: 4,
                support: 3,
                votes: vec![("a_1".into(), Some("car".into())), ("a_2".into(), None)],
            },
            LabelRow {
                item_id: "img-2".into(),
                width: None,
                height: None,
                label: None,
                confidence: None,
                bbox: None,
                annotators: 3,
                support: 0,
                votes: vec![],
            },
        ];
        let s = schema();
        let b = batch(&s, "p", "bbox", &rows).unwrap();
        assert_eq!(super::rows(&b).unwrap(), rows);
    }
}
