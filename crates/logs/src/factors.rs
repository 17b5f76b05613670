//! Factor tables written by other trainers: Spark MLlib ALS's saved layout
//! (`id`, `features` as an array of floats; a model's `userFactors/` and
//! `itemFactors/` are directories of Parquet part files) or plain tables of
//! an id column and one column per dimension.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::columns;
use crate::error::{Error, Result};
use crate::interactions::Ids;

/// One side of a factor model: ids and their vectors, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorTable {
    /// One id per row: numbers, or strings.
    pub ids: Ids,
    /// Values per vector.
    pub dim: usize,
    /// `ids.len() × dim` values.
    pub values: Vec<f32>,
}

/// The Parquet/Arrow files of `path`: itself, or a directory's `*.parquet`
/// part files in name order (Spark's `_SUCCESS` and `.crc` files skipped).
fn parts(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("parquet"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::NoRows {
            path: path.to_path_buf(),
        });
    }
    Ok(files)
}

/// Reads a factor table: the id column is `id` when there is one, else the
/// first column; the vectors are the one list column (`features`) when
/// there is one, else every other column, in order, one per dimension.
/// Errors name the file, the column and the row: a null, a vector of
/// another length, a non-finite value, a repeated id is left to the model.
pub fn read_factor_table(path: &Path) -> Result<FactorTable> {
    let mut frames = Vec::new();
    for part in parts(path)? {
        frames.push((part.clone(), crate::io::read_frame(&part)?));
    }
    let mut ids: Option<Ids> = None;
    let mut values = Vec::new();
    let mut dim: Option<usize> = None;
    for (part, df) in &frames {
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Some(id_name) = names
            .iter()
            .find(|n| n.as_str() == "id")
            .or_else(|| names.first())
            .cloned()
        else {
            return Err(Error::NoRows { path: part.clone() });
        };
        let id_col = columns::column(part, df, &id_name)?;
        let part_ids = if id_col.dtype().is_integer() {
            Ids::Numbers(columns::u64s(part, id_col)?)
        } else {
            Ids::Strings(columns::strings(part, id_col)?)
        };
        let n = part_ids_len(&part_ids);
        let list = names
            .iter()
            .filter(|c| **c != id_name)
            .find(|c| {
                matches!(
                    df.column(c.as_str()).map(|x| x.dtype()),
                    Ok(DataType::List(_))
                )
            })
            .cloned();
        let (d, v) = match list {
            Some(c) => list_vectors(part, df, &c, n)?,
            None => {
                let cols: Vec<&String> = names.iter().filter(|c| **c != id_name).collect();
                if cols.is_empty() {
                    return Err(Error::MissingColumn {
                        path: part.clone(),
                        column: "features".into(),
                        available: names.join(", "),
                    });
                }
                let per: Vec<Vec<f32>> = cols
                    .iter()
                    .map(|c| columns::f32s(part, columns::column(part, df, c)?))
                    .collect::<Result<_>>()?;
                let mut v = Vec::with_capacity(n * per.len());
                for r in 0..n {
                    v.extend(per.iter().map(|c| c[r]));
                }
                (per.len(), v)
            }
        };
        match dim {
            Some(d0) if d0 != d => {
                return Err(Error::LengthMismatch {
                    path: part.clone(),
                    what: "vectors (per row, against the first part's)",
                    expected: d0,
                    got: d,
                })
            }
            _ => dim = Some(d),
        }
        values.extend(v);
        ids = Some(match (ids, part_ids) {
            (None, p) => p,
            (Some(Ids::Numbers(mut a)), Ids::Numbers(b)) => {
                a.extend(b);
                Ids::Numbers(a)
            }
            (Some(Ids::Strings(mut a)), Ids::Strings(b)) => {
                a.extend(b);
                Ids::Strings(a)
            }
            (Some(_), _) => {
                return Err(Error::WrongType {
                    path: part.clone(),
                    column: id_name,
                    found: "ids of another type than the first part's".into(),
                    expected: "the same id type in every part",
                })
            }
        });
    }
    Ok(FactorTable {
        ids: ids.unwrap_or(Ids::Numbers(Vec::new())),
        dim: dim.unwrap_or(0),
        values,
    })
}

fn part_ids_len(ids: &Ids) -> usize {
    match ids {
        Ids::Numbers(v) => v.len(),
        Ids::Strings(v) => v.len(),
    }
}

/// The vectors of list column `name`: every row the same length, no null,
/// finite values.
fn list_vectors(path: &Path, df: &DataFrame, name: &str, n: usize) -> Result<(usize, Vec<f32>)> {
    let col = columns::column(path, df, name)?;
    let list = col
        .list()
        .map_err(|e| Error::polars(path, e))?
        .cast(&DataType::List(Box::new(DataType::Float64)))
        .map_err(|e| Error::polars(path, e))?;
    let list = list.list().map_err(|e| Error::polars(path, e))?;
    let mut dim = None;
    let mut out = Vec::new();
    for row in 0..list.len() {
        let v = list.get_as_series(row).ok_or_else(|| Error::NullValue {
            path: path.to_path_buf(),
            column: name.to_string(),
            row,
        })?;
        let d = *dim.get_or_insert(v.len());
        if v.len() != d {
            return Err(Error::InvalidValue {
                path: path.to_path_buf(),
                column: name.to_string(),
                row,
                value: format!("{} values", v.len()),
                reason: "a vector of another length than the first row's",
            });
        }
        for x in v.f64().map_err(|e| Error::polars(path, e))?.iter() {
            match x {
                Some(x) if x.is_finite() && x.abs() <= 1e15 => out.push(x as f32),
                other => {
                    return Err(Error::InvalidValue {
                        path: path.to_path_buf(),
                        column: name.to_string(),
                        row,
                        value: format!("{other:?}"),
                        reason: "not a finite number of at most 1e15",
                    })
                }
            }
        }
    }
    if out.len() != n * dim.unwrap_or(0) {
        return Err(Error::LengthMismatch {
            path: path.to_path_buf(),
            what: "vector values",
            expected: n * dim.unwrap_or(0),
            got: out.len(),
        });
    }
    Ok((dim.unwrap_or(0), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_layout_parts_and_plain_columns_read_alike() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io(Path::new("tmp"), e))?;
        let spark = dir.path().join("userFactors");
        std::fs::create_dir(&spark).map_err(|e| Error::io(&spark, e))?;
        let feats = |rows: &[[f32; 2]]| {
            let s: Vec<Series> = rows
                .iter()
                .map(|r| Series::new("".into(), r.to_vec()))
                .collect();
            Series::new("features".into(), s)
        };
        let mut a = DataFrame::new(
            2,
            vec![
                Column::new("id".into(), vec![3i32, 1]),
                feats(&[[0.5, 1.0], [2.0, -1.0]]).into(),
            ],
        )
        .map_err(|e| Error::polars(&spark, e))?;
        let mut b = DataFrame::new(
            1,
            vec![
                Column::new("id".into(), vec![7i32]),
                feats(&[[0.0, 4.0]]).into(),
            ],
        )
        .map_err(|e| Error::polars(&spark, e))?;
        crate::io::write_frame(&spark.join("part-00000.parquet"), &mut a)?;
        crate::io::write_frame(&spark.join("part-00001.parquet"), &mut b)?;
        std::fs::write(spark.join("_SUCCESS"), b"").map_err(|e| Error::io(&spark, e))?;
        let t = read_factor_table(&spark)?;
        assert_eq!(t.ids, Ids::Numbers(vec![3, 1, 7]));
        assert_eq!(
            (t.dim, t.values.clone()),
            (2, vec![0.5, 1.0, 2.0, -1.0, 0.0, 4.0])
        );
        // The same as plain columns, string ids.
        let plain = dir.path().join("items.parquet");
        let mut c = DataFrame::new(
            2,
            vec![
                Column::new("item".into(), vec!["a", "b"]),
                Column::new("f0".into(), vec![0.5f64, 2.0]),
                Column::new("f1".into(), vec![1.0f64, -1.0]),
            ],
        )
        .map_err(|e| Error::polars(&plain, e))?;
        crate::io::write_frame(&plain, &mut c)?;
        let t = read_factor_table(&plain)?;
        assert_eq!(t.ids, Ids::Strings(vec!["a".into(), "b".into()]));
        assert_eq!((t.dim, t.values), (2, vec![0.5, 1.0, 2.0, -1.0]));
        // A ragged vector is named by row.
        let ragged = dir.path().join("ragged.parquet");
        let s = Series::new(
            "features".into(),
            vec![
                Series::new("".into(), vec![1f32, 2.0]),
                Series::new("".into(), vec![1f32]),
            ],
        );
        let mut d = DataFrame::new(2, vec![Column::new("id".into(), vec![1i64, 2]), s.into()])
            .map_err(|e| Error::polars(&ragged, e))?;
        crate::io::write_frame(&ragged, &mut d)?;
        let e = read_factor_table(&ragged).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("features"), "{e}");
        Ok(())
    }
}
