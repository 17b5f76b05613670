//! Generic interactions for training from other sources (MovieLens, a warehouse
//! export): `user_id, item_id, [weight], [ts_ms]`, column names mappable.

use std::path::Path;

use crate::columns;
use crate::delimited::{self, IdColumn, Keys, Layout};
use crate::error::{Error, Result};
use crate::io::{read_frame_ids, TextOptions};
use crate::schema;

/// Which columns hold what, and how text files are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionColumns {
    /// User id column (default `user_id`).
    pub user: String,
    /// Item id column (default `item_id`).
    pub item: String,
    /// Optional weight column (a rating, a play count); absent means weight 1.
    pub weight: Option<String>,
    /// Optional timestamp column in Unix ms (or any monotone integer time).
    pub ts: Option<String>,
    /// Layout of text files (every extension but Parquet's and Arrow's; see
    /// the `delimited` module: separator, header, bad rows). A headerless
    /// file's columns are named `column_1`, `column_2`, ...: MovieLens 100K's
    /// `u.data` is read with `has_header = false`, user `column_1`, item
    /// `column_2`, weight `column_3`, ts `column_4`.
    pub text: Layout,
}

impl Default for InteractionColumns {
    fn default() -> Self {
        InteractionColumns {
            user: schema::USER_ID.to_string(),
            item: schema::ITEM_ID.to_string(),
            weight: None,
            ts: None,
            text: Layout::default(),
        }
    }
}

/// Validated user–item interactions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interactions {
    /// The user of each interaction.
    pub user_id: Vec<u64>,
    /// The item of each interaction.
    pub item_id: Vec<u64>,
    /// Present when a weight column was mapped.
    pub weight: Option<Vec<f32>>,
    /// Present when a timestamp column was mapped.
    pub ts: Option<Vec<i64>>,
    /// When the users are strings: `user_keys[k]` is the id of user `k`
    /// (`user_id` then holds dense internal ids).
    pub user_keys: Option<Keys>,
    /// When the items are strings: `item_keys[k]` is the id of item `k`.
    pub item_keys: Option<Keys>,
}

impl Interactions {
    /// Number of interactions.
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    /// Whether there is no interaction.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }
}

/// Whether `path` is a columnar file (Parquet or Arrow IPC) rather than text.
fn columnar(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("parquet" | "pq" | "arrow" | "ipc" | "feather")
    )
}

/// A column's ids as numbers, or as dense internal ids with their strings.
fn split_ids(col: IdColumn) -> (Vec<u64>, Option<Keys>) {
    match col {
        IdColumn::Numbers(v) => (v, None),
        IdColumn::Strings(v, keys) => (v, Some(keys)),
    }
}

/// Checks weights: finite, not negative, within f32.
fn check_weights(path: &Path, column: &str, values: &[f64]) -> Result<Vec<f32>> {
    values
        .iter()
        .enumerate()
        .map(|(row, &v)| {
            let bad = |reason| Error::InvalidValue {
                path: path.to_path_buf(),
                column: column.to_string(),
                row,
                // 1e300 reads as 1e300, not as 301 digits.
                value: if v.is_finite() && v.abs() >= 1e15 {
                    format!("{v:e}")
                } else {
                    v.to_string()
                },
                reason,
            };
            if !v.is_finite() || v.abs() > f32::MAX as f64 {
                Err(bad("not a finite number within 32-bit float range"))
            } else if v < 0.0 {
                Err(bad(
                    "a negative weight (implicit feedback weighs how strongly a user \
                         chose an item; drop negative rows or shift the scale)",
                ))
            } else {
                Ok(v as f32)
            }
        })
        .collect()
}

/// Reads interactions from a Parquet or Arrow IPC file, or from delimited
/// text of any other extension (`.csv`, `.tsv`, `.dat`, `.txt`: see the
/// `delimited` module for what text is taken as it comes).
///
/// Ids are non-negative integers or strings (then kept in `user_keys` /
/// `item_keys`; a text column of plain numbers is numbers). Weights are
/// finite, non-negative numbers; a missing mapped column or a bad value is
/// an error naming the column and the row.
pub fn read_interactions(path: &Path, cols: &InteractionColumns) -> Result<Interactions> {
    if !columnar(path) {
        let nums: Vec<&str> = cols
            .weight
            .iter()
            .chain(cols.ts.iter())
            .map(String::as_str)
            .collect();
        let mut p = delimited::read(path, &cols.text, &[&cols.user, &cols.item], &nums)?;
        if p.lines.is_empty() {
            return Err(Error::NoRows {
                path: path.to_path_buf(),
            });
        }
        let mut numbers = p.numbers.drain(..);
        let weight = match &cols.weight {
            Some(w) => Some(check_weights(path, w, &numbers.next().unwrap_or_default())?),
            None => None,
        };
        let ts = match &cols.ts {
            Some(t) => {
                let v = numbers.next().unwrap_or_default();
                if let Some(row) = v.iter().position(|x| x.fract() != 0.0 || x.abs() > 9.0e18) {
                    return Err(Error::InvalidValue {
                        path: path.to_path_buf(),
                        column: t.clone(),
                        row,
                        value: v[row].to_string(),
                        reason: "not a whole-number timestamp",
                    });
                }
                Some(v.iter().map(|&x| x as i64).collect())
            }
            None => None,
        };
        let mut ids = p.ids.into_iter();
        let (user_id, user_keys) = split_ids(ids.next().unwrap_or(IdColumn::Numbers(Vec::new())));
        let (item_id, item_keys) = split_ids(ids.next().unwrap_or(IdColumn::Numbers(Vec::new())));
        return Ok(Interactions {
            user_id,
            item_id,
            weight,
            ts,
            user_keys,
            item_keys,
        });
    }
    let df = read_frame_ids(path, &TextOptions::default(), &[&cols.user, &cols.item])?;
    if df.height() == 0 {
        return Err(Error::NoRows {
            path: path.to_path_buf(),
        });
    }
    let (user_id, user_keys) = columnar_ids(path, columns::column(path, &df, &cols.user)?)?;
    let (item_id, item_keys) = columnar_ids(path, columns::column(path, &df, &cols.item)?)?;
    let weight = match &cols.weight {
        Some(w) => {
            let values = columns::f32s(path, columns::column(path, &df, w)?)?;
            if let Some(row) = values.iter().position(|&v| v < 0.0) {
                return Err(Error::InvalidValue {
                    path: path.to_path_buf(),
                    column: w.clone(),
                    row,
                    value: values[row].to_string(),
                    reason: "a negative weight (implicit feedback weighs how strongly a user \
                             chose an item; drop negative rows or shift the scale)",
                });
            }
            Some(values)
        }
        None => None,
    };
    let ts = match &cols.ts {
        Some(t) => Some(columns::i64s(path, columns::column(path, &df, t)?)?),
        None => None,
    };
    Ok(Interactions {
        user_id,
        item_id,
        weight,
        ts,
        user_keys,
        item_keys,
    })
}

/// An id column of a columnar file: integers as they are; strings as a text
/// file's ids are read (plain numbers stay numbers, anything else is a
/// string id with its dictionary), so a frame and its CSV give one model.
fn columnar_ids(path: &Path, col: &polars::prelude::Column) -> Result<(Vec<u64>, Option<Keys>)> {
    if col.dtype() == &polars::prelude::DataType::String {
        let raw = columns::strings(path, col)?;
        if let Some(row) = raw.iter().position(|s| s.is_empty()) {
            return Err(Error::InvalidValue {
                path: path.to_path_buf(),
                column: col.name().to_string(),
                row,
                value: "\"\"".into(),
                reason: "an empty id",
            });
        }
        return Ok(split_ids(delimited::ids_of_strings(raw)));
    }
    Ok((columns::u64s(path, col)?, None))
}

/// One column of ids (a list of users, say): numbers, or strings (then the
/// strings, in file order). Columnar files' ids are validated like every id
/// column; text is read as [`read_interactions`] reads it.
pub fn read_ids(path: &Path, column: &str, text: &Layout) -> Result<Ids> {
    if columnar(path) {
        let df = read_frame_ids(path, &TextOptions::default(), &[column])?;
        return Ok(
            match columnar_ids(path, columns::column(path, &df, column)?)? {
                (v, None) => Ids::Numbers(v),
                (v, Some(keys)) => {
                    Ids::Strings(v.into_iter().map(|k| keys[k as usize].clone()).collect())
                }
            },
        );
    }
    let p = delimited::read(path, text, &[column], &[])?;
    Ok(match p.ids.into_iter().next() {
        Some(IdColumn::Strings(v, keys)) => {
            Ids::Strings(v.into_iter().map(|k| keys[k as usize].clone()).collect())
        }
        Some(IdColumn::Numbers(v)) => Ids::Numbers(v),
        None => Ids::Numbers(Vec::new()),
    })
}

/// A column of ids as read: numbers, or strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    /// Plain decimal ids.
    Numbers(Vec<u64>),
    /// String ids, one per row.
    Strings(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movielens_style_headerless_tsv() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("u.tsv");
        std::fs::write(&path, "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")?;
        let cols = InteractionColumns {
            user: "column_1".into(),
            item: "column_2".into(),
            weight: Some("column_3".into()),
            ts: Some("column_4".into()),
            text: Layout {
                has_header: false,
                ..Layout::default()
            },
        };
        let it = read_interactions(&path, &cols)?;
        assert_eq!(it.user_id, vec![196, 186]);
        assert_eq!(it.item_id, vec![242, 302]);
        assert_eq!(it.weight, Some(vec![3.0, 3.0]));
        assert_eq!(it.ts, Some(vec![881250949, 891717742]));
        Ok(())
    }

    #[test]
    fn mapped_columns_and_errors() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "uid,movie,rating\n1,10,4.5\n2,11,NaN\n")?;
        let mut cols = InteractionColumns {
            user: "uid".into(),
            item: "movie".into(),
            ..Default::default()
        };
        let it = read_interactions(&path, &cols)?;
        assert_eq!(it.item_id, vec![10, 11]);
        assert_eq!(it.weight, None);
        cols.weight = Some("rating".into());
        let msg = read_interactions(&path, &cols).unwrap_err().to_string();
        assert!(msg.contains("rating") && msg.contains("row 1"), "{msg}");
        cols.user = "user".into();
        let msg = read_interactions(&path, &cols).unwrap_err().to_string();
        assert!(msg.contains("missing column `user`"), "{msg}");
        Ok(())
    }
}
