//! Per-user aggregation in one streaming pass with state that fits: polars
//! scans the events in batches and evaluates the per-row parts of every
//! aggregation (the derived columns, surface filters, casts); this module adds
//! each batch into dense per-user accumulators indexed by the assignments
//! (events of unassigned users are skipped, as the left join from the
//! assignments would drop them). Memory is the per-user table (users ×
//! aggregations × 8 bytes) plus one set of distinct `(user, value)` pairs per
//! `n_unique` aggregation, instead of a hash-table group-by over every row.
//!
//! The sums are of integer-valued columns (milliseconds, counts, 0/1 flags),
//! exact in f64 below 2⁵³ whatever the order batches arrive in, so the per-user
//! values do not depend on the number of threads. Scales are applied after
//! the sums.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use reelkit_logs::schema;

use crate::error::{Error, Result};
use crate::metrics::{Aggregation, Metric};
use crate::source::{derive, require_columns, Source};

/// A fast hasher for integer keys (SplitMix64's finaliser, the workspace's
/// one): the keys are user ids and event values, not attacker-chosen.
#[derive(Default)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        reelkit_assign::splitmix64(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01B3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

/// Distinct `(user row, value)` pairs: the values seen so far grouped by
/// user row (compressed sparse rows: 8 bytes a pair and 4 a user), plus a
/// buffer of new pairs that is sorted, deduplicated and merged in when full.
/// A hash set of the same pairs takes about 4× the bytes, and more while it
/// grows.
struct DistinctPairs {
    /// `values[offsets[r]..offsets[r + 1]]`: user row r's values, ascending.
    offsets: Vec<u32>,
    values: Vec<u64>,
    buffer: Vec<(u32, u64)>,
    capacity: usize,
}

/// Pairs buffered before a merge (32 MiB).
const DISTINCT_BUFFER: usize = 1 << 21;

impl DistinctPairs {
    fn new(users: usize) -> DistinctPairs {
        DistinctPairs {
            offsets: vec![0; users + 1],
            values: Vec::new(),
            buffer: Vec::new(),
            capacity: DISTINCT_BUFFER,
        }
    }

    fn insert(&mut self, row: u32, value: u64) {
        self.buffer.push((row, value));
        if self.buffer.len() >= self.capacity {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.buffer.sort_unstable();
        self.buffer.dedup();
        let users = self.offsets.len() - 1;
        let mut values = Vec::with_capacity(self.values.len() + self.buffer.len());
        let mut offsets = Vec::with_capacity(users + 1);
        offsets.push(0u32);
        let mut b = 0;
        for r in 0..users {
            let old = &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize];
            let start = b;
            while b < self.buffer.len() && self.buffer[b].0 as usize == r {
                b += 1;
            }
            let new = &self.buffer[start..b];
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < new.len() {
                let v = match (old.get(i), new.get(j)) {
                    (Some(&x), Some(&(_, y))) if x < y => {
                        i += 1;
                        x
                    }
                    (Some(&x), Some(&(_, y))) if x > y => {
                        j += 1;
                        y
                    }
                    (Some(&x), Some(_)) => {
                        i += 1;
                        j += 1;
                        x
                    }
                    (Some(&x), None) => {
                        i += 1;
                        x
                    }
                    (None, Some(&(_, y))) => {
                        j += 1;
                        y
                    }
                    (None, None) => break,
                };
                values.push(v);
            }
            offsets.push(values.len() as u32);
        }
        self.values = values;
        self.offsets = offsets;
        self.buffer.clear();
    }

    /// Adds each user's count of distinct values to `counts`.
    fn count_into(mut self, counts: &mut [f64]) {
        self.flush();
        for (r, c) in counts.iter_mut().enumerate() {
            *c += f64::from(self.offsets[r + 1] - self.offsets[r]);
        }
    }
}

/// Assigned user id → row of the assignments.
#[derive(Clone)]
pub(crate) struct UserIndex {
    rows: Arc<FastMap<u64, u32>>,
    len: usize,
}

impl UserIndex {
    pub(crate) fn new(user_ids: &[u64]) -> Result<UserIndex> {
        if user_ids.len() > u32::MAX as usize {
            return Err(Error::Config(format!(
                "{} assigned users: at most {} are supported",
                user_ids.len(),
                u32::MAX
            )));
        }
        let mut rows = FastMap::default();
        rows.reserve(user_ids.len());
        for (i, &u) in user_ids.iter().enumerate() {
            rows.insert(u, i as u32);
        }
        Ok(UserIndex {
            rows: Arc::new(rows),
            len: user_ids.len(),
        })
    }
}

/// What one aggregation needs per row.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Every row counts 1.
    Rows,
    /// The row's value (column `v{k}`, f64, 0 where filtered out) is summed.
    Sum,
    /// The row's value (column `v{k}`, u64 or string, null where filtered
    /// out) is counted once per user.
    Distinct,
}

/// The per-row expression of an aggregation (named `v{k}`) and its part.
fn row_expr(a: &Aggregation, k: usize) -> (Part, Option<Expr>) {
    let name = format!("v{k}");
    let filter = a.surface.as_ref().map(|s| {
        col(schema::SURFACE)
            .cast(DataType::String)
            .eq(lit(s.clone()))
    });
    match (a.agg.as_str(), a.column.as_deref(), filter) {
        ("count", _, None) => (Part::Rows, None),
        ("count", _, Some(f)) => (Part::Sum, Some(f.cast(DataType::Float64).alias(name))),
        ("sum", Some(c), None) => (Part::Sum, Some(col(c).cast(DataType::Float64).alias(name))),
        ("sum", Some(c), Some(f)) => (
            Part::Sum,
            Some(
                when(f)
                    .then(col(c).cast(DataType::Float64))
                    .otherwise(lit(0.0))
                    .alias(name),
            ),
        ),
        ("n_unique", Some(c), None) => (Part::Distinct, Some(col(c).alias(name))),
        ("n_unique", Some(c), Some(f)) => (
            Part::Distinct,
            Some(when(f).then(col(c)).otherwise(lit(NULL)).alias(name)),
        ),
        // check_metrics refuses anything else before we get here.
        _ => (Part::Rows, None),
    }
}

/// Per-user state, filled batch by batch.
struct State {
    sums: Vec<Vec<f64>>,
    /// One per aggregation (`None` for those that are not distinct counts).
    distinct: Vec<Option<DistinctPairs>>,
    /// Interned non-integer values of each `n_unique` aggregation.
    dictionary: Vec<FastMap<String, u64>>,
    /// Event rows read, and those of an assigned user.
    rows: (u64, u64),
}

/// A distinct-count column's values as u64 keys: integers as themselves (two's
/// complement), strings through a dictionary (exact), null as `None`.
fn keys(c: &Column, dict: &mut FastMap<String, u64>) -> PolarsResult<Vec<Option<u64>>> {
    let dt = c.dtype();
    if dt.is_integer() || dt.is_bool() {
        let s = c.cast(&DataType::Int64)?;
        return Ok(s.i64()?.iter().map(|v| v.map(|x| x as u64)).collect());
    }
    let s = c.cast(&DataType::String)?;
    Ok(s.str()?
        .iter()
        .map(|v| {
            v.map(|x| {
                let next = dict.len() as u64;
                *dict.entry(x.to_string()).or_insert(next)
            })
        })
        .collect())
}

impl State {
    fn add(&mut self, df: &DataFrame, parts: &[Part], index: &UserIndex) -> PolarsResult<()> {
        for (name, _, what) in row_checks() {
            let flags = df.column(&format!("{BAD}{name}"))?;
            if let Some(at) = flags.bool()?.iter().position(|b| b == Some(true)) {
                let row = df.column(ROW)?.u64()?.get(at).unwrap_or_default();
                polars_bail!(ComputeError:
                    "column `{name}` at row {row} (0-based data row): {what}"
                );
            }
        }
        let users = df.column(schema::USER_ID)?.cast(&DataType::UInt64)?;
        let rows: Vec<Option<u32>> = users
            .u64()?
            .iter()
            .map(|u| u.and_then(|u| index.rows.get(&u).copied()))
            .collect();
        self.rows.0 += rows.len() as u64;
        self.rows.1 += rows.iter().flatten().count() as u64;
        for (k, part) in parts.iter().enumerate() {
            match part {
                Part::Rows => {
                    let sums = &mut self.sums[k];
                    for r in rows.iter().flatten() {
                        sums[*r as usize] += 1.0;
                    }
                }
                Part::Sum => {
                    let c = df.column(&format!("v{k}"))?.cast(&DataType::Float64)?;
                    let sums = &mut self.sums[k];
                    for (r, v) in rows.iter().zip(c.f64()?.iter()) {
                        if let (Some(r), Some(v)) = (r, v) {
                            sums[*r as usize] += v;
                        }
                    }
                }
                Part::Distinct => {
                    let c = df.column(&format!("v{k}"))?;
                    let keys = keys(c, &mut self.dictionary[k])?;
                    let Some(set) = self.distinct[k].as_mut() else {
                        continue;
                    };
                    for (r, v) in rows.iter().zip(keys) {
                        if let (Some(r), Some(v)) = (r, v) {
                            set.insert(*r, v);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The row number column of a scan (for messages).
const ROW: &str = "__reelkit_row";
/// The prefix of the row checks' flag columns.
const BAD: &str = "__reelkit_bad_";

/// The event-schema checks every reader applies (`reelkit_logs::read_events`
/// refuses the same rows; a test runs both on the same logs): ids and times
/// present, watch time finite and not negative, duration finite and positive.
/// Each with what a flagged row is.
fn row_checks() -> [(&'static str, Expr, &'static str); 4] {
    let number = |c: &str, least: f64, strict: bool| {
        let x = col(c).cast(DataType::Float64);
        let below = if strict {
            x.clone().lt_eq(lit(least))
        } else {
            x.clone().lt(lit(least))
        };
        col(c)
            .is_null()
            .or(x.is_nan().fill_null(lit(false)))
            .or(below.fill_null(lit(false)))
    };
    [
        // A user id that is not a number (text, a negative) is as unusable
        // as a missing one: the assignments hold numbers.
        (
            schema::USER_ID,
            col(schema::USER_ID).cast(DataType::UInt64).is_null(),
            "null or not an unsigned integer",
        ),
        (schema::TS_MS, col(schema::TS_MS).is_null(), "null"),
        (
            schema::WATCH_MS,
            number(schema::WATCH_MS, 0.0, false),
            "null, NaN or negative",
        ),
        (
            schema::DURATION_MS,
            number(schema::DURATION_MS, 0.0, true),
            "null, NaN, zero or negative (a video's duration must be positive)",
        ),
    ]
}

/// One metric's per-user numerator and (ratio metrics) denominator, in the
/// order of the assignments; users without events have zeros.
pub(crate) struct PerUser {
    pub(crate) num: Vec<f64>,
    pub(crate) den: Option<Vec<f64>>,
}

/// Aggregates `src`'s events (before `until_ms`, when given) per assigned user
/// for every metric, in one streaming pass.
/// Per-user sums of every metric's parts over `src`'s events (before
/// `until_ms` when given), with the event rows read and those of an assigned
/// user.
pub(crate) fn per_user(
    src: &Source,
    metrics: &[Metric],
    until_ms: Option<i64>,
    index: &UserIndex,
) -> Result<(Vec<PerUser>, (u64, u64))> {
    let mut lf = src.scan()?;
    require_columns(src, &mut lf, metrics)?;
    if let Some(t) = until_ms {
        lf = lf.filter(col(schema::TS_MS).cast(DataType::Int64).lt(lit(t)));
    }
    // Unique aggregations (a `count` shared by many ratios is done once);
    // the scale is applied after the sums.
    let mut aggs: Vec<Aggregation> = Vec::new();
    let mut slot = |a: &Aggregation| -> usize {
        let key = Aggregation {
            scale: 1.0,
            ..a.clone()
        };
        match aggs.iter().position(|b| *b == key) {
            Some(k) => k,
            None => {
                aggs.push(key);
                aggs.len() - 1
            }
        }
    };
    let plan: Vec<(usize, Option<usize>)> = metrics
        .iter()
        .map(|m| (slot(&m.numerator), m.denominator.as_ref().map(&mut slot)))
        .collect();
    let mut parts = Vec::with_capacity(aggs.len());
    let mut exprs = vec![col(schema::USER_ID), col(ROW).cast(DataType::UInt64)];
    // Rows another reader would refuse are refused here too, by column and
    // row, not dropped or summed as nonsense (checked in the same pass).
    for (name, bad, _) in row_checks() {
        exprs.push(bad.alias(format!("{BAD}{name}")));
    }
    for (k, a) in aggs.iter().enumerate() {
        let (part, e) = row_expr(a, k);
        parts.push(part);
        exprs.extend(e);
    }
    let state = Arc::new(Mutex::new(State {
        sums: vec![vec![0.0; index.len]; aggs.len()],
        distinct: parts
            .iter()
            .map(|p| (*p == Part::Distinct).then(|| DistinctPairs::new(index.len)))
            .collect(),
        dictionary: (0..aggs.len()).map(|_| FastMap::default()).collect(),
        rows: (0, 0),
    }));
    let parts = Arc::new(parts);
    let sink = {
        let (state, parts, index) = (state.clone(), parts.clone(), index.clone());
        PlanCallback::new(move |df: DataFrame| -> PolarsResult<bool> {
            let mut st = state
                .lock()
                .map_err(|_| polars_err!(ComputeError: "a batch failed before this one"))?;
            st.add(&df, &parts, &index)?;
            Ok(false)
        })
    };
    derive(lf.with_row_index(ROW, None))
        .select(exprs)
        .sink_batches(sink, false, None)
        .and_then(|q| q.collect_with_engine(Engine::Streaming))
        .map_err(src.err())?;
    let mut st = state
        .lock()
        .map_err(|_| Error::Config(format!("{}: aggregation failed", src.name())))?;
    for (k, part) in parts.iter().enumerate() {
        if *part == Part::Distinct {
            if let Some(set) = st.distinct[k].take() {
                set.count_into(&mut st.sums[k]);
            }
        }
    }
    let sums = std::mem::take(&mut st.sums);
    let rows = st.rows;
    drop(st);
    // Each aggregation's column goes to the last metric that uses it by
    // move, to the others by copy.
    let mut columns: Vec<Option<Vec<f64>>> = sums.into_iter().map(Some).collect();
    let mut uses = vec![0usize; columns.len()];
    for &(num, den) in &plan {
        uses[num] += 1;
        if let Some(d) = den {
            uses[d] += 1;
        }
    }
    let mut take = |k: usize, scale: f64| -> Vec<f64> {
        uses[k] -= 1;
        let mut v = if uses[k] == 0 {
            columns[k].take().unwrap_or_default()
        } else {
            columns[k].clone().unwrap_or_default()
        };
        if scale != 1.0 {
            v.iter_mut().for_each(|x| *x *= scale);
        }
        v
    };
    let values = metrics
        .iter()
        .zip(&plan)
        .map(|(m, &(num, den))| PerUser {
            num: take(num, m.numerator.scale),
            den: den.map(|d| take(d, m.denominator.as_ref().map_or(1.0, |a| a.scale))),
        })
        .collect();
    Ok((values, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_pairs_count_each_value_once_across_merges() {
        let mut d = DistinctPairs {
            capacity: 7,
            ..DistinctPairs::new(5)
        };
        let mut want = vec![0.0; 5];
        let mut seen = std::collections::HashSet::new();
        let mut x = 1u64;
        for _ in 0..500 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let (row, value) = ((x >> 60) as u32 % 5, (x >> 33) % 11);
            if seen.insert((row, value)) {
                want[row as usize] += 1.0;
            }
            d.insert(row, value);
        }
        let mut got = vec![0.0; 5];
        d.count_into(&mut got);
        assert_eq!(got, want);
    }

    #[test]
    fn string_values_are_counted_exactly() -> PolarsResult<()> {
        let mut dict = FastMap::default();
        let c = Column::new("s".into(), ["reels", "feed", "reels"]);
        let k = keys(&c, &mut dict)?;
        assert_eq!(k, vec![Some(0), Some(1), Some(0)]);
        Ok(())
    }
}
