//! Generic interactions for training from other sources (MovieLens, a warehouse
//! export): `user_id, item_id, [weight], [ts_ms]`, column names mappable.

use std::path::Path;

use crate::columns;
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
    /// Separator and header of CSV/TSV files. A headerless file's columns are
    /// named `column_1`, `column_2`, ...: MovieLens 100K's `u.data` is read with
    /// `.tsv`, `has_header = false`, user `column_1`, item `column_2`,
    /// weight `column_3`, ts `column_4`.
    pub text: TextOptions,
}

impl Default for InteractionColumns {
    fn default() -> Self {
        InteractionColumns {
            user: schema::USER_ID.to_string(),
            item: schema::ITEM_ID.to_string(),
            weight: None,
            ts: None,
            text: TextOptions::default(),
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

/// Reads interactions from a Parquet, CSV/TSV or Arrow IPC file.
///
/// Ids must be non-negative integers; weights finite numbers; a missing mapped
/// column or a bad value is an error naming the column and the row.
pub fn read_interactions(path: &Path, cols: &InteractionColumns) -> Result<Interactions> {
    let df = read_frame_ids(path, &cols.text, &[&cols.user, &cols.item])?;
    if df.height() == 0 {
        return Err(Error::NoRows {
            path: path.to_path_buf(),
        });
    }
    let user_id = columns::u64s(path, columns::column(path, &df, &cols.user)?)?;
    let item_id = columns::u64s(path, columns::column(path, &df, &cols.item)?)?;
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
    })
}

/// One column of non-negative integer ids (a list of users, say), validated like
/// every id column.
pub fn read_id_column(path: &Path, column: &str, text: &TextOptions) -> Result<Vec<u64>> {
    let df = read_frame_ids(path, text, &[column])?;
    columns::u64s(path, columns::column(path, &df, column)?)
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
            text: TextOptions {
                separator: None,
                has_header: false,
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
