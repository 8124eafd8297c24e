//! String columns as users' files encode them. pyarrow and Spark write
//! `string`, polars and many Spark writers `large_string`, DuckDB and
//! newer pyarrow `string_view`, pandas categoricals a dictionary of
//! strings; ids are often integers. A job reads them all, cast here to the
//! one type its code handles, and refuses anything else with an error that
//! names the column, its type and what is accepted.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

/// What a column holds, which decides the types it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// Text: any string encoding.
    Plain,
    /// An id: any string encoding, or an integer (read as its decimal
    /// digits).
    Id,
}

impl Text {
    /// What is accepted, for messages.
    pub fn accepted(self) -> &'static str {
        match self {
            Text::Plain => {
                "string, large_string, string_view, or a dictionary of strings (a categorical)"
            }
            Text::Id => "string, large_string, string_view, a dictionary of strings, or an integer",
        }
    }
}

/// A column that cannot be read as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}` is {data_type}; accepted: {accepted}")]
pub struct Unusable {
    /// The column.
    pub column: String,
    /// Its type, as Arrow prints it.
    pub data_type: String,
    /// What the column may be.
    pub accepted: &'static str,
}

/// Whether `t` is one of the string types read without a cast.
pub fn is_plain_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether a column of type `t` can be read as `text`.
pub fn usable(t: &DataType, text: Text) -> bool {
    match t {
        t if is_plain_string(t) => true,
        DataType::Dictionary(_, values) => is_plain_string(values),
        t if text == Text::Id => t.is_integer(),
        // A column of nothing but nulls (pyarrow's `null` type) reads as
        // a column of null strings.
        DataType::Null => true,
        _ => false,
    }
}

/// Checks that `column` of `schema` can be read as `text`; a missing
/// column is for the caller to judge.
pub fn check(schema: &Schema, column: &str, text: Text) -> Result<(), Unusable> {
    match schema.field_with_name(column) {
        Ok(f) if !usable(f.data_type(), text) => Err(Unusable {
            column: column.to_owned(),
            data_type: f.data_type().to_string(),
            accepted: text.accepted(),
        }),
        _ => Ok(()),
    }
}

/// `array` (the column `name`) as `Utf8`: itself when it is already, a
/// cast otherwise.
pub fn to_utf8(array: &ArrayRef, name: &str, text: Text) -> Result<ArrayRef, Unusable> {
    if array.data_type() == &DataType::Utf8 {
        return Ok(array.clone());
    }
    if !usable(array.data_type(), text) && array.data_type() != &DataType::Null {
        return Err(Unusable {
            column: name.to_owned(),
            data_type: array.data_type().to_string(),
            accepted: text.accepted(),
        });
    }
    arrow_cast::cast(array, &DataType::Utf8).map_err(|e| Unusable {
        column: name.to_owned(),
        data_type: format!("{} ({e})", array.data_type()),
        accepted: text.accepted(),
    })
}

/// `array` in a type [`is_plain_string`] accepts: itself when it is one,
/// a `Utf8` cast otherwise. Readers that handle the three plain types
/// avoid copying large or view strings this way.
pub fn to_plain(array: &ArrayRef, name: &str, text: Text) -> Result<ArrayRef, Unusable> {
    if is_plain_string(array.data_type()) {
        return Ok(array.clone());
    }
    to_utf8(array, name, text)
}

/// `batch` with each of `columns` that it has cast to `Utf8`; the other
/// columns are left as they are.
pub fn with_utf8_columns(
    batch: &RecordBatch,
    columns: &[(&str, Text)],
) -> Result<RecordBatch, Unusable> {
    recast(batch, columns, |t| t == &DataType::Utf8, to_utf8)
}

/// `batch` with each of `columns` that it has in one of the plain string
/// types ([`to_plain`]); the other columns are left as they are.
pub fn with_plain_columns(
    batch: &RecordBatch,
    columns: &[(&str, Text)],
) -> Result<RecordBatch, Unusable> {
    recast(batch, columns, is_plain_string, to_plain)
}

/// `batch` with `cast` applied to those of `columns` whose type `done`
/// does not accept.
fn recast(
    batch: &RecordBatch,
    columns: &[(&str, Text)],
    done: fn(&DataType) -> bool,
    cast: fn(&ArrayRef, &str, Text) -> Result<ArrayRef, Unusable>,
) -> Result<RecordBatch, Unusable> {
    let schema = batch.schema();
    let wanted = |name: &str| columns.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
    if schema
        .fields()
        .iter()
        .all(|f| wanted(f.name()).is_none() || done(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (f, a) in schema.fields().iter().zip(batch.columns()) {
        match wanted(f.name()) {
            Some(text) if !done(f.data_type()) => {
                let cast = cast(a, f.name(), text)?;
                fields.push(
                    Field::new(f.name(), cast.data_type().clone(), true)
                        .with_metadata(f.metadata().clone()),
                );
                arrays.push(cast);
            }
            _ => {
                arrays.push(a.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    // The columns kept their lengths, so this holds.
    Ok(RecordBatch::try_new(schema, arrays).expect("a cast keeps a column's length"))
}

/// `schema` as [`with_utf8_columns`] leaves it.
pub fn utf8_schema(schema: &Schema, columns: &[(&str, Text)]) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if columns.iter().any(|(name, _)| name == f.name()) {
                Field::new(f.name(), DataType::Utf8, true).with_metadata(f.metadata().clone())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::{
        DictionaryArray, Float64Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    };

    use super::*;

    fn values(a: &ArrayRef) -> Vec<Option<String>> {
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    #[test]
    fn every_string_encoding_reads_as_the_same_strings() {
        let want = vec![Some("a".to_owned()), None, Some("bé".to_owned())];
        let src = [Some("a"), None, Some("bé")];
        let encodings: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(src.to_vec())),
            Arc::new(LargeStringArray::from(src.to_vec())),
            Arc::new(StringViewArray::from(src.to_vec())),
            Arc::new(src.iter().copied().collect::<DictionaryArray<Int32Type>>()),
        ];
        for a in &encodings {
            assert_eq!(
                values(&to_utf8(a, "c", Text::Plain).unwrap()),
                want,
                "{}",
                a.data_type()
            );
            assert!(is_plain_string(
                to_plain(a, "c", Text::Plain).unwrap().data_type()
            ));
        }
    }

    #[test]
    fn integer_ids_read_as_digits_and_nulls_stay_null() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(42), None, Some(-7)]));
        assert_eq!(
            values(&to_utf8(&ids, "id", Text::Id).unwrap()),
            vec![Some("42".to_owned()), None, Some("-7".to_owned())]
        );
        let err = to_utf8(&ids, "text", Text::Plain).unwrap_err();
        assert_eq!(err.column, "text");
        assert_eq!(err.data_type, "Int64");
        assert!(
            err.to_string().contains("accepted: string, large_string"),
            "{err}"
        );
    }

    #[test]
    fn other_types_are_refused_with_what_is_accepted() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
        let err = to_utf8(&floats, "item_id", Text::Id).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `item_id` is Float64; accepted: string, large_string, string_view, a dictionary of strings, or an integer"
        );
        let schema = Schema::new(vec![Field::new(
            "p",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Float64)),
            true,
        )]);
        assert!(check(&schema, "p", Text::Plain).is_err());
        assert!(check(&schema, "missing", Text::Plain).is_ok());
    }

    #[test]
    fn a_batch_keeps_its_other_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![0.5, 1.5])),
            ],
        )
        .unwrap();
        let out = with_utf8_columns(&batch, &[("id", Text::Id), ("absent", Text::Plain)]).unwrap();
        assert_eq!(out.schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(out.column(1), batch.column(1));
        assert_eq!(
            out.schema().as_ref(),
            &utf8_schema(&schema, &[("id", Text::Id)])
        );
    }
}
