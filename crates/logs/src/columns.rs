//! Typed extraction of columns with validation that names the column and row.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

pub(crate) fn column<'a>(path: &Path, df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(|_| Error::MissingColumn {
        path: path.to_path_buf(),
        column: name.to_string(),
        available: df
            .get_column_names()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn wrong_type(path: &Path, col: &Column, expected: &'static str) -> Error {
    Error::WrongType {
        path: path.to_path_buf(),
        column: col.name().to_string(),
        expected,
        found: col.dtype().to_string(),
    }
}

fn cast(path: &Path, col: &Column, to: &DataType) -> Result<Series> {
    col.as_materialized_series()
        .cast(to)
        .map_err(|e| Error::polars(path, e))
}

fn invalid(path: &Path, col: &Column, row: usize, value: String, reason: &'static str) -> Error {
    Error::InvalidValue {
        path: path.to_path_buf(),
        column: col.name().to_string(),
        row,
        value,
        reason,
    }
}

fn null(path: &Path, col: &Column, row: usize) -> Error {
    Error::NullValue {
        path: path.to_path_buf(),
        column: col.name().to_string(),
        row,
    }
}

/// A non-negative integer column (ids, counts, milliseconds) read as `u64`.
///
/// Accepts any integer type, and floats holding whole numbers (CSV files written
/// by other tools). Nulls, negatives, NaN and fractions are errors naming the row;
/// values above `max` too.
pub(crate) fn non_negative(path: &Path, col: &Column, max: u64) -> Result<Vec<u64>> {
    let dtype = col.dtype();
    let mut out = Vec::with_capacity(col.len());
    if dtype.is_unsigned_integer() {
        let s = cast(path, col, &DataType::UInt64)?;
        for (row, v) in s
            .u64()
            .map_err(|e| Error::polars(path, e))?
            .iter()
            .enumerate()
        {
            let v = v.ok_or_else(|| null(path, col, row))?;
            if v > max {
                return Err(invalid(path, col, row, v.to_string(), "value out of range"));
            }
            out.push(v);
        }
    } else if dtype.is_signed_integer() {
        let s = cast(path, col, &DataType::Int64)?;
        for (row, v) in s
            .i64()
            .map_err(|e| Error::polars(path, e))?
            .iter()
            .enumerate()
        {
            let v = v.ok_or_else(|| null(path, col, row))?;
            if v < 0 {
                return Err(invalid(path, col, row, v.to_string(), "negative value"));
            }
            if v as u64 > max {
                return Err(invalid(path, col, row, v.to_string(), "value out of range"));
            }
            out.push(v as u64);
        }
    } else if dtype.is_float() {
        let s = cast(path, col, &DataType::Float64)?;
        for (row, v) in s
            .f64()
            .map_err(|e| Error::polars(path, e))?
            .iter()
            .enumerate()
        {
            let v = v.ok_or_else(|| null(path, col, row))?;
            if v.is_nan() {
                return Err(invalid(path, col, row, v.to_string(), "NaN"));
            }
            if v < 0.0 {
                return Err(invalid(path, col, row, v.to_string(), "negative value"));
            }
            if v.fract() != 0.0 || v > max as f64 {
                return Err(invalid(
                    path,
                    col,
                    row,
                    v.to_string(),
                    "not a whole number in range",
                ));
            }
            out.push(v as u64);
        }
    } else {
        return Err(wrong_type(path, col, "unsigned integer"));
    }
    Ok(out)
}

pub(crate) fn u64s(path: &Path, col: &Column) -> Result<Vec<u64>> {
    non_negative(path, col, u64::MAX)
}

pub(crate) fn u32s(path: &Path, col: &Column) -> Result<Vec<u32>> {
    Ok(non_negative(path, col, u32::MAX as u64)?
        .into_iter()
        .map(|v| v as u32)
        .collect())
}

/// A signed integer column (timestamps).
pub(crate) fn i64s(path: &Path, col: &Column) -> Result<Vec<i64>> {
    let dtype = col.dtype();
    if !(dtype.is_integer()) {
        return Err(wrong_type(path, col, "integer"));
    }
    let s = cast(path, col, &DataType::Int64)?;
    s.i64()
        .map_err(|e| Error::polars(path, e))?
        .iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| null(path, col, row)))
        .collect()
}

/// A numeric column (any integer or float type; an all-null column too when
/// `null_type_ok`) cast to `f64`, for the float readers below to iterate.
fn as_f64(path: &Path, col: &Column, null_type_ok: bool) -> Result<Series> {
    let dtype = col.dtype();
    if !(dtype.is_integer() || dtype.is_float() || (null_type_ok && dtype.is_null())) {
        return Err(wrong_type(path, col, "number"));
    }
    cast(path, col, &DataType::Float64)
}

/// A float column (weights): any numeric type; nulls and NaN are errors.
pub(crate) fn f32s(path: &Path, col: &Column) -> Result<Vec<f32>> {
    as_f64(path, col, false)?
        .f64()
        .map_err(|e| Error::polars(path, e))?
        .iter()
        .enumerate()
        .map(|(row, v)| {
            let v = v.ok_or_else(|| null(path, col, row))?;
            if !v.is_finite() {
                return Err(invalid(
                    path,
                    col,
                    row,
                    v.to_string(),
                    "not a finite number",
                ));
            }
            if v.abs() > f64::from(f32::MAX) {
                return Err(invalid(
                    path,
                    col,
                    row,
                    format!("{v:e}"),
                    "beyond the 32-bit float range (±3.4e38)",
                ));
            }
            Ok(v as f32)
        })
        .collect()
}

/// A probability column where nulls are allowed (read as NaN): any numeric
/// type; every other value must lie in (0, 1].
pub(crate) fn probabilities(path: &Path, col: &Column) -> Result<Vec<f64>> {
    as_f64(path, col, true)?
        .f64()
        .map_err(|e| Error::polars(path, e))?
        .iter()
        .enumerate()
        .map(|(row, v)| match v {
            None => Ok(f64::NAN),
            Some(p) if p > 0.0 && p <= 1.0 => Ok(p),
            Some(p) => Err(invalid(
                path,
                col,
                row,
                p.to_string(),
                "a probability must be in (0, 1] (or null where not logged)",
            )),
        })
        .collect()
}

/// A boolean column; integer 0/1 columns (CSV from other tools) are accepted.
pub(crate) fn bools(path: &Path, col: &Column) -> Result<Vec<bool>> {
    let dtype = col.dtype();
    if dtype.is_bool() {
        let s = col.as_materialized_series();
        return s
            .bool()
            .map_err(|e| Error::polars(path, e))?
            .iter()
            .enumerate()
            .map(|(row, v)| v.ok_or_else(|| null(path, col, row)))
            .collect();
    }
    if dtype.is_integer() {
        let s = cast(path, col, &DataType::Int64)?;
        return s
            .i64()
            .map_err(|e| Error::polars(path, e))?
            .iter()
            .enumerate()
            .map(|(row, v)| match v {
                None => Err(null(path, col, row)),
                Some(0) => Ok(false),
                Some(1) => Ok(true),
                Some(v) => Err(invalid(path, col, row, v.to_string(), "expected 0 or 1")),
            })
            .collect();
    }
    Err(wrong_type(path, col, "boolean"))
}

/// A string column, each value parsed by `parse`.
pub(crate) fn parsed<T>(
    path: &Path,
    col: &Column,
    reason: &'static str,
    mut parse: impl FnMut(&str) -> Option<T>,
) -> Result<Vec<T>> {
    if !col.dtype().is_string() {
        return Err(wrong_type(path, col, "string"));
    }
    let s = col.as_materialized_series();
    s.str()
        .map_err(|e| Error::polars(path, e))?
        .iter()
        .enumerate()
        .map(|(row, v)| {
            let v = v.ok_or_else(|| null(path, col, row))?;
            parse(v).ok_or_else(|| invalid(path, col, row, v.to_string(), reason))
        })
        .collect()
}

pub(crate) fn strings(path: &Path, col: &Column) -> Result<Vec<String>> {
    parsed(path, col, "", |s| Some(s.to_string()))
}
