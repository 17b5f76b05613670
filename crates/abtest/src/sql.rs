//! Warehouse scale: the SQL that reduces an experiment's event tables to the
//! per-arm sufficient statistics the engine needs ([`warehouse_sql`]), and the
//! reader of its output ([`read_stats`]), so `reelkit ab analyze --stats`
//! reports from a few hundred bytes whatever the size of the logs.
//!
//! The query mirrors the local pipeline step by step: derived columns
//! (`completed`, `skipped`, `day`), per-user aggregations over the events (and
//! the pre-period events, for CUPED), a left join from the assignments (users
//! without events count as zeros), then per-arm sums. It returns one row per
//! arm and metric with the columns of [`STATS_COLUMNS`]:
//!
//! | column | meaning (sums over the arm's assigned users) |
//! |---|---|
//! | `variant`, `metric` | arm and metric name |
//! | `n` | users |
//! | `sum_x`, `sum_x2` | value (ratio: numerator) and its square |
//! | `sum_y`, `sum_y2`, `sum_xy` | ratio denominator, its square, numerator × denominator |
//! | `sum_p`, `sum_p2`, `sum_xp` | pre-period value (ratio: numerator), square, × `x` |
//! | `sum_q`, `sum_q2`, `sum_pq`, `sum_xq`, `sum_yp`, `sum_yq` | pre-period ratio denominator and its products |
//! | `sum_x3`, `sum_y3`, `sum_x2y`, `sum_xy2` | third moments, for the report's skewness check (optional: without them the check is skipped) |
//!
//! Columns that a metric does not use are 0. Percentile capping and quantile
//! metrics need every user's value, so they are refused here: analyse those
//! with the local pipeline.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;
use reelkit_logs::schema;

use crate::error::{Error, Result};
use crate::metrics::{Aggregation, Metric};
use crate::pipeline::ArmSums;
use crate::source::scan;
use crate::stats::{MetricKind, Sums};

/// The SQL dialect of [`warehouse_sql`]: they differ in identifier quoting and
/// the name of the double-precision type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// ANSI SQL (PostgreSQL, DuckDB, Snowflake, Trino, polars' SQL engine).
    Ansi,
    /// Google BigQuery standard SQL.
    Bigquery,
    /// Spark SQL (and Databricks).
    Spark,
}

impl std::str::FromStr for Dialect {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ansi" => Ok(Dialect::Ansi),
            "bigquery" => Ok(Dialect::Bigquery),
            "spark" => Ok(Dialect::Spark),
            other => Err(Error::Invalid {
                what: "dialect".into(),
                reason: format!("unknown dialect `{other}` (ansi, bigquery, spark)"),
            }),
        }
    }
}

impl Dialect {
    fn quote(self, ident: &str) -> String {
        match self {
            Dialect::Ansi => format!("\"{ident}\""),
            Dialect::Bigquery | Dialect::Spark => format!("`{ident}`"),
        }
    }

    fn double(self) -> &'static str {
        match self {
            Dialect::Ansi => "DOUBLE PRECISION",
            Dialect::Bigquery => "FLOAT64",
            Dialect::Spark => "DOUBLE",
        }
    }
}

/// The tables the query reads (names are inserted as given, so they may be
/// qualified: `project.dataset.events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlTables {
    /// Experiment-period events (reelkit's event schema).
    pub events: String,
    /// `user_id, variant`, one row per user.
    pub assignments: String,
    /// Pre-period events: with them, the CUPED covariates are summed too.
    pub pre_events: Option<String>,
}

impl Default for SqlTables {
    fn default() -> Self {
        SqlTables {
            events: "events".into(),
            assignments: "assignments".into(),
            pre_events: None,
        }
    }
}

/// The output columns of the warehouse query, in order.
pub const STATS_COLUMNS: [&str; 21] = [
    "variant", "metric", "n", "sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_p", "sum_p2",
    "sum_xp", "sum_q", "sum_q2", "sum_pq", "sum_xq", "sum_yp", "sum_yq", "sum_x3", "sum_y3",
    "sum_x2y", "sum_xy2",
];

/// How many of [`STATS_COLUMNS`] an export must have (the third moments may be
/// missing from files written before they were added).
const REQUIRED_STATS_COLUMNS: usize = 17;

/// Event columns stored as booleans (summed as 0/1).
const BOOLEAN_COLUMNS: [&str; 4] = [
    schema::LIKED,
    schema::SHARED,
    schema::COMMENTED,
    schema::FOLLOWED,
];

/// Metrics the warehouse query cannot express, named.
fn check_sql_metrics(metrics: &[Metric]) -> Result<()> {
    crate::metrics::check_metrics(metrics)?;
    if metrics.is_empty() {
        return Err(Error::Config("no metric to compute".into()));
    }
    for m in metrics {
        let refuse = |reason: &str| {
            Err(Error::Metric {
                metric: m.name.clone(),
                reason: reason.to_string(),
            })
        };
        if m.kind == MetricKind::Quantile {
            return refuse(
                "a quantile metric needs every user's value; analyse it with the local \
                 pipeline (--events), not warehouse sums",
            );
        }
        if m.cap_percentile.is_some() {
            return refuse(
                "percentile capping needs every user's value; analyse it with the local \
                 pipeline (--events), not warehouse sums",
            );
        }
        if m.name.contains(['\'', '\\']) || m.name.chars().any(char::is_control) {
            return refuse("the name cannot go in an SQL string literal (quote, backslash)");
        }
    }
    Ok(())
}

/// One aggregation over the derived events of one user, as SQL.
fn agg_sql(a: &Aggregation, d: Dialect) -> String {
    let q = |c: &str| d.quote(c);
    let value = |c: &str| {
        if BOOLEAN_COLUMNS.contains(&c) {
            format!("CASE WHEN {} THEN 1 ELSE 0 END", q(c))
        } else {
            format!("CAST({} AS {})", q(c), d.double())
        }
    };
    let on_surface = a
        .surface
        .as_ref()
        .map(|s| format!("{} = '{s}'", q(schema::SURFACE)));
    let col = a.column.as_deref().unwrap_or_default();
    let double = |e: String| format!("CAST({e} AS {})", d.double());
    let e = match (a.agg.as_str(), on_surface) {
        ("count", None) => double("COUNT(*)".to_string()),
        ("count", Some(f)) => double(format!("SUM(CASE WHEN {f} THEN 1 ELSE 0 END)")),
        ("sum", None) if BOOLEAN_COLUMNS.contains(&col) => double(format!("SUM({})", value(col))),
        ("sum", None) => format!("SUM({})", value(col)),
        ("sum", Some(f)) => double(format!("SUM(CASE WHEN {f} THEN {} ELSE 0 END)", value(col))),
        ("n_unique", None) => double(format!("COUNT(DISTINCT {})", q(col))),
        ("n_unique", Some(f)) => {
            double(format!("COUNT(DISTINCT CASE WHEN {f} THEN {} END)", q(col)))
        }
        // check_metrics admits no other aggregation.
        _ => double("0".to_string()),
    };
    if a.scale == 1.0 {
        e
    } else {
        // `{:?}` keeps every digit and always a decimal point.
        format!("{e} * {:?}", a.scale)
    }
}

/// `WITH` entries: the derived events of `table` (`{name}_ev`) and their
/// per-user aggregations (`{name}`, columns `m{i}_num`, `m{i}_den`).
fn per_user_ctes(out: &mut String, name: &str, table: &str, metrics: &[Metric], d: Dialect) {
    let q = |c: &str| d.quote(c);
    let (watch, dur, ts) = (
        q(schema::WATCH_MS),
        q(schema::DURATION_MS),
        q(schema::TS_MS),
    );
    let skip = schema::SKIP_THRESHOLD_MS;
    let _ = writeln!(out, "{name}_ev AS (");
    let _ = writeln!(out, "  SELECT *,");
    let _ = writeln!(
        out,
        "    CASE WHEN {watch} >= {dur} THEN 1 ELSE 0 END AS {},",
        q("completed")
    );
    let _ = writeln!(
        out,
        "    CASE WHEN {watch} < LEAST({dur}, {skip}) THEN 1 ELSE 0 END AS {},",
        q("skipped")
    );
    let _ = writeln!(out, "    {ts} - MOD({ts}, 86400000) AS {}", q("day"));
    let _ = writeln!(out, "  FROM {table}");
    let _ = writeln!(out, "),");
    let _ = writeln!(out, "{name} AS (");
    let _ = write!(out, "  SELECT {}", q(schema::USER_ID));
    for (i, m) in metrics.iter().enumerate() {
        let _ = write!(
            out,
            ",\n    {} AS {}",
            agg_sql(&m.numerator, d),
            q(&format!("m{i}_num"))
        );
        if let Some(den) = &m.denominator {
            let _ = write!(
                out,
                ",\n    {} AS {}",
                agg_sql(den, d),
                q(&format!("m{i}_den"))
            );
        }
    }
    let _ = writeln!(out, "\n  FROM {name}_ev");
    let _ = writeln!(out, "  GROUP BY {}", q(schema::USER_ID));
    let _ = write!(out, ")");
}

/// A table name is pasted into the SQL as written, so it may only be a
/// (dotted, optionally back-quoted) identifier: letters, digits, `_`, `-`
/// (BigQuery projects), `.` and back-quotes; nothing that ends a statement,
/// opens a comment or a string.
fn check_table_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '`'))
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: format!("{what} `{name}`"),
            reason: "a table name may hold only letters, digits, `_`, `-`, `.` and back-quotes"
                .into(),
        })
    }
}

/// The SQL that computes the per-arm sufficient statistics of `metrics` in a
/// warehouse, for `reelkit ab analyze --stats`.
pub fn warehouse_sql(metrics: &[Metric], dialect: Dialect, tables: &SqlTables) -> Result<String> {
    check_sql_metrics(metrics)?;
    for (what, name) in [
        ("events table", Some(&tables.events)),
        ("assignments table", Some(&tables.assignments)),
        ("pre-period events table", tables.pre_events.as_ref()),
    ] {
        if let Some(name) = name {
            check_table_name(what, name)?;
        }
    }
    let d = dialect;
    let q = |c: &str| d.quote(c);
    let zero = format!("CAST(0 AS {})", d.double());
    let mut s = String::new();
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    let _ = writeln!(
        s,
        "-- reelkit ab sql ({dialect:?}): per-arm sufficient statistics for \
         reelkit ab analyze --stats FILE."
    );
    let _ = writeln!(s, "-- Metrics: {}.", names.join(", "));
    let _ = writeln!(
        s,
        "-- Tables: events {}, assignments {}{}.",
        tables.events,
        tables.assignments,
        tables
            .pre_events
            .as_ref()
            .map(|p| format!(", pre-period events {p}"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "WITH");
    per_user_ctes(&mut s, "post", &tables.events, metrics, d);
    if let Some(pre) = &tables.pre_events {
        s.push_str(",\n");
        per_user_ctes(&mut s, "pre", pre, metrics, d);
    }
    // Every assigned user's values: x (value or numerator), y (denominator),
    // p and q (the same over the pre-period).
    let _ = writeln!(s, ",\nu AS (");
    let _ = write!(
        s,
        "  SELECT a.{uid}, a.{var}",
        uid = q(schema::USER_ID),
        var = q(schema::VARIANT)
    );
    for (i, m) in metrics.iter().enumerate() {
        let field = |alias: &str, col: &str| format!("COALESCE({alias}.{}, {zero})", q(col));
        let value = |alias: &str| {
            let num = field(alias, &format!("m{i}_num"));
            match m.kind {
                MetricKind::Proportion => {
                    format!(
                        "CAST(CASE WHEN {num} > 0 THEN 1 ELSE 0 END AS {})",
                        d.double()
                    )
                }
                _ => num,
            }
        };
        let den = |alias: &str| match m.kind {
            MetricKind::Ratio => field(alias, &format!("m{i}_den")),
            _ => zero.clone(),
        };
        let with_pre = tables.pre_events.is_some() && m.kind.takes_cuped();
        let cols = [
            (value("post"), "x"),
            (den("post"), "y"),
            (if with_pre { value("pre") } else { zero.clone() }, "p"),
            (if with_pre { den("pre") } else { zero.clone() }, "q"),
        ];
        for (e, v) in cols {
            let _ = write!(s, ",\n    {e} AS {}", q(&format!("{v}{i}")));
        }
    }
    let _ = writeln!(s, "\n  FROM {} a", tables.assignments);
    let _ = writeln!(
        s,
        "  LEFT JOIN post ON post.{uid} = a.{uid}",
        uid = q(schema::USER_ID)
    );
    if tables.pre_events.is_some() {
        let _ = writeln!(
            s,
            "  LEFT JOIN pre ON pre.{uid} = a.{uid}",
            uid = q(schema::USER_ID)
        );
    }
    let _ = writeln!(s, ")");
    for (i, m) in metrics.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(s, "UNION ALL");
        }
        let c = |v: &str| q(&format!("{v}{i}"));
        let sum = |factors: &[&str]| {
            let f: Vec<String> = factors.iter().map(|v| c(v)).collect();
            format!("SUM({})", f.join(" * "))
        };
        let sums = [
            sum(&["x"]),
            sum(&["x", "x"]),
            sum(&["y"]),
            sum(&["y", "y"]),
            sum(&["x", "y"]),
            sum(&["p"]),
            sum(&["p", "p"]),
            sum(&["x", "p"]),
            sum(&["q"]),
            sum(&["q", "q"]),
            sum(&["p", "q"]),
            sum(&["x", "q"]),
            sum(&["y", "p"]),
            sum(&["y", "q"]),
            sum(&["x", "x", "x"]),
            sum(&["y", "y", "y"]),
            sum(&["x", "x", "y"]),
            sum(&["x", "y", "y"]),
        ];
        let _ = write!(
            s,
            "SELECT {var}, '{name}' AS {metric}, CAST(COUNT(*) AS {dbl}) AS {n}",
            var = q(schema::VARIANT),
            name = m.name,
            metric = q("metric"),
            dbl = d.double(),
            n = q("n"),
        );
        for (e, col) in sums.iter().zip(&STATS_COLUMNS[3..]) {
            let _ = write!(s, ",\n  {e} AS {}", q(col));
        }
        let _ = writeln!(s, "\nFROM u GROUP BY {}", q(schema::VARIANT));
    }
    let _ = writeln!(s, "ORDER BY {}, {}", q(schema::VARIANT), q("metric"));
    Ok(s)
}

/// Reads the output of [`warehouse_sql`] (CSV, Parquet or Arrow IPC, column
/// names in any case) into per-arm sums in `metrics` order, arms by name.
/// Every arm must have one row per metric with the same user count, every
/// number finite.
pub fn read_stats(path: &Path, metrics: &[Metric]) -> Result<Vec<ArmSums>> {
    check_sql_metrics(metrics)?;
    let invalid = |reason: String| Error::Invalid {
        what: path.display().to_string(),
        reason,
    };
    let pe = |source| Error::Polars {
        input: path.display().to_string(),
        source: reelkit_logs::guard::without_python_hints(source),
    };
    let df = scan(path)?.collect().map_err(pe)?;
    let find = |name: &str| -> Result<&Column> {
        df.columns()
            .iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                invalid(format!(
                    "missing column `{name}` (has: {}); expected the output of `reelkit ab sql`",
                    df.get_column_names()
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    };
    let strings = |name: &str| -> Result<Vec<String>> {
        let c = find(name)?.cast(&DataType::String).map_err(pe)?;
        let ca = c.str().map_err(pe)?;
        ca.iter()
            .enumerate()
            .map(|(row, v)| {
                v.map(str::to_string)
                    .ok_or_else(|| invalid(format!("row {}: `{name}` is empty", row + 1)))
            })
            .collect()
    };
    let variants = strings(schema::VARIANT)?;
    let metric_names = strings("metric")?;
    let mut numbers = Vec::with_capacity(STATS_COLUMNS.len() - 2);
    for (k, name) in STATS_COLUMNS.iter().enumerate().skip(2) {
        let c = match find(name) {
            Ok(c) => c,
            Err(_) if k >= REQUIRED_STATS_COLUMNS => {
                numbers.push(vec![f64::NAN; df.height()]);
                continue;
            }
            Err(e) => return Err(e),
        };
        if !c.dtype().is_primitive_numeric() {
            return Err(invalid(format!(
                "column `{name}` must be numeric, found {}",
                c.dtype()
            )));
        }
        let c = c.cast(&DataType::Float64).map_err(pe)?;
        let v: Vec<f64> = c
            .f64()
            .map_err(pe)?
            .iter()
            .enumerate()
            .map(|(row, v)| match v {
                Some(x) if x.is_finite() => Ok(x),
                Some(x) => Err(invalid(format!("row {}: `{name}` is {x}", row + 1))),
                None => Err(invalid(format!("row {}: `{name}` is empty", row + 1))),
            })
            .collect::<Result<_>>()?;
        numbers.push(v);
    }
    let mut arm_names = variants.clone();
    arm_names.sort();
    arm_names.dedup();
    let mut arms: Vec<ArmSums> = arm_names
        .iter()
        .map(|v| ArmSums {
            variant: v.clone(),
            sums: vec![Sums::default(); metrics.len()],
            quantiles: Vec::new(),
        })
        .collect();
    let mut seen = vec![vec![false; metrics.len()]; arms.len()];
    for row in 0..df.height() {
        let m = metrics
            .iter()
            .position(|m| m.name == metric_names[row])
            .ok_or_else(|| {
                invalid(format!(
                    "row {}: metric `{}` is not among the metrics analysed ({})",
                    row + 1,
                    metric_names[row],
                    metrics
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let a = arm_names
            .binary_search(&variants[row])
            .map_err(|_| invalid(format!("row {}: unknown arm", row + 1)))?;
        if std::mem::replace(&mut seen[a][m], true) {
            return Err(invalid(format!(
                "row {}: arm `{}` has metric `{}` twice",
                row + 1,
                variants[row],
                metric_names[row]
            )));
        }
        let g = |k: usize| numbers[k][row];
        let n = g(0);
        if n < 0.0 || n.fract() != 0.0 {
            return Err(invalid(format!(
                "row {}: `n` must be a count of users, got {n}",
                row + 1
            )));
        }
        arms[a].sums[m] = Sums {
            n,
            x: g(1),
            x2: g(2),
            y: g(3),
            y2: g(4),
            xy: g(5),
            p: g(6),
            p2: g(7),
            xp: g(8),
            q: g(9),
            q2: g(10),
            pq: g(11),
            xq: g(12),
            yp: g(13),
            yq: g(14),
            x3: g(15),
            y3: g(16),
            x2y: g(17),
            xy2: g(18),
        };
    }
    for (a, arm) in arms.iter().enumerate() {
        if let Some(m) = seen[a].iter().position(|&s| !s) {
            return Err(invalid(format!(
                "arm `{}` has no row for metric `{}`",
                arm.variant, metrics[m].name
            )));
        }
        let n = arm.sums[0].n;
        if let Some((m, s)) = arm.sums.iter().enumerate().find(|(_, s)| s.n != n) {
            return Err(invalid(format!(
                "arm `{}`: metric `{}` counts {} users but `{}` counts {n}; every metric \
                 covers the same assigned users",
                arm.variant, metrics[m].name, s.n, metrics[0].name
            )));
        }
    }
    Ok(arms)
}
