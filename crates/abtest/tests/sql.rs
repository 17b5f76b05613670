//! The warehouse SQL, run through polars' SQL engine on the committed sample,
//! gives the same per-arm sums and the same report as the native pipeline; its
//! output file is checked like any other input.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars::sql::SQLContext;
use reelkit_abtest::{
    analyze, analyze_sums, builtin_metrics, parse_metrics,
    per_user::{arm_sums, scan},
    statistics::Sums,
    warehouse::{read_stats, warehouse_sql, Dialect, SqlTables, STATS_COLUMNS},
    AnalysisConfig, Correction, Metric, Report,
};
use reelkit_logs::Assignments;

type Res = Result<(), Box<dyn std::error::Error>>;

mod common;
use common::{inputs, pre_and_post, users};

/// Three arms over the sample's users, plus users who never appear in the
/// events (they count as zeros on both paths).
fn assignments() -> Result<Assignments, Box<dyn std::error::Error>> {
    let mut users = users();
    users.extend(10_000_000..10_000_050);
    let arms = ["control", "treatment_a", "treatment_b"];
    Ok(Assignments {
        variant: users
            .iter()
            .map(|&u| arms[(u.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize % 3].to_string())
            .collect(),
        user_id: users,
    })
}

/// The built-in metrics and surface-filtered ones of every aggregation.
fn metrics() -> Result<Vec<Metric>, Box<dyn std::error::Error>> {
    let mut m = builtin_metrics();
    m.extend(parse_metrics(
        r#"
        [[metric]]
        name = "reels_like_rate"
        kind = "ratio"
        numerator = { agg = "sum", column = "liked", surface = "reels" }
        denominator = { agg = "count", surface = "reels" }

        [[metric]]
        name = "feed_watch_seconds"
        kind = "mean"
        numerator = { agg = "sum", column = "watch_ms", scale = 0.001, surface = "feed" }

        [[metric]]
        name = "reels_sessions"
        kind = "mean"
        numerator = { agg = "n_unique", column = "session_id", surface = "reels" }

        [[metric]]
        name = "watch_follower_share"
        kind = "proportion"
        numerator = { agg = "sum", column = "followed", surface = "watch" }

        [[metric]]
        name = "watch_per_day"
        kind = "ratio"
        numerator = { agg = "sum", column = "watch_ms", scale = 0.001 }
        denominator = { agg = "n_unique", column = "day" }
        cuped = false
        "#,
    )?);
    Ok(m)
}

fn cfg() -> AnalysisConfig {
    AnalysisConfig {
        experiment: "sql".into(),
        control: Some("control".into()),
        alpha: 0.05,
        correction: Correction::Holm,
        weights: None,
        sequential: None,
        comparisons: Vec::new(),
    }
}

/// Runs the emitted SQL through polars' SQL engine and writes its result as a
/// CSV file, as a warehouse export would.
fn run_sql(
    sql: &str,
    events: &Path,
    a: &Assignments,
    pre: Option<&Path>,
    out: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let ctx = SQLContext::new();
    ctx.register("events", scan(events)?);
    ctx.register("assignments", a.to_dataframe()?.lazy());
    if let Some(p) = pre {
        ctx.register("pre_events", scan(p)?);
    }
    let mut ctx = ctx;
    let mut df = ctx.execute(sql)?.collect()?;
    let cols: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(cols, STATS_COLUMNS, "the query's output columns");
    let mut f = std::fs::File::create(out)?;
    CsvWriter::new(&mut f).finish(&mut df)?;
    Ok(out.to_path_buf())
}

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want}");
}

fn same_sums(got: &Sums, want: &Sums, what: &str) {
    let f = |s: &Sums| {
        [
            s.n, s.x, s.x2, s.y, s.y2, s.xy, s.p, s.p2, s.xp, s.q, s.q2, s.pq, s.xq, s.yp, s.yq,
            s.x3, s.y3, s.x2y, s.xy2,
        ]
    };
    for (k, (g, w)) in f(got).iter().zip(f(want)).enumerate() {
        close(*g, w, &format!("{what} {}", STATS_COLUMNS[k + 2]));
    }
}

fn same_report(got: &Report, want: &Report) {
    assert_eq!(got.control, want.control);
    assert_eq!(got.srm.counts, want.srm.counts);
    close(got.srm.chi2, want.srm.chi2, "srm chi2");
    assert_eq!(got.metrics.len(), want.metrics.len());
    for (g, w) in got.metrics.iter().zip(&want.metrics) {
        let what = format!("{} / {}", w.metric, w.variant);
        assert_eq!((&g.metric, &g.variant), (&w.metric, &w.variant));
        assert_eq!((g.n_control, g.n_variant), (w.n_control, w.n_variant));
        assert_eq!(g.cuped, w.cuped, "{what} cuped");
        assert_eq!(g.significant, w.significant, "{what} significant");
        close(g.theta, w.theta, &format!("{what} theta"));
        let (a, b) = (&g.test, &w.test);
        for (x, y, k) in [
            (a.control_mean, b.control_mean, "control_mean"),
            (a.variant_mean, b.variant_mean, "variant_mean"),
            (a.abs_effect, b.abs_effect, "abs_effect"),
            (a.abs_ci_low, b.abs_ci_low, "abs_ci_low"),
            (a.abs_ci_high, b.abs_ci_high, "abs_ci_high"),
            (a.rel_effect, b.rel_effect, "rel_effect"),
            (a.rel_ci_low, b.rel_ci_low, "rel_ci_low"),
            (a.rel_ci_high, b.rel_ci_high, "rel_ci_high"),
            (a.p_value, b.p_value, "p_value"),
            (a.df, b.df, "df"),
            (g.p_value_adjusted, w.p_value_adjusted, "p_value_adjusted"),
            (
                g.skewness.unwrap_or(0.0),
                w.skewness.unwrap_or(0.0),
                "skewness",
            ),
        ] {
            close(x, y, &format!("{what} {k}"));
        }
        assert_eq!(g.skewed, w.skewed, "{what} skewed");
    }
    assert_eq!(
        got.decisions.iter().map(|d| d.verdict).collect::<Vec<_>>(),
        want.decisions.iter().map(|d| d.verdict).collect::<Vec<_>>()
    );
}

#[test]
fn emitted_sql_gives_the_native_report() -> Res {
    let dir = tempfile::tempdir()?;
    let (pre, post) = pre_and_post(dir.path())?;
    let a = assignments()?;
    let metrics = metrics()?;
    for (dialect, with_pre) in [
        (Dialect::Ansi, true),
        (Dialect::Ansi, false),
        (Dialect::Spark, true),
    ] {
        let pre = with_pre.then_some(pre.as_path());
        let tables = SqlTables {
            pre_events: pre.map(|_| "pre_events".to_string()),
            ..SqlTables::default()
        };
        let sql = warehouse_sql(&metrics, dialect, &tables)?;
        let out = dir.path().join(format!("stats_{dialect:?}_{with_pre}.csv"));
        run_sql(&sql, &post, &a, pre, &out)?;
        let from_sql = read_stats(&out, &metrics)?;
        let native = arm_sums(&inputs(&post, &a, pre, &metrics))?;
        assert_eq!(from_sql.len(), 3);
        for (g, w) in from_sql.iter().zip(&native) {
            assert_eq!(g.variant, w.variant);
            for (m, (gs, ws)) in metrics.iter().zip(g.sums.iter().zip(&w.sums)) {
                same_sums(
                    gs,
                    ws,
                    &format!("{dialect:?} pre={with_pre} {} {}", g.variant, m.name),
                );
            }
        }
        let got = analyze_sums(&from_sql, &metrics, &cfg())?;
        let want = analyze(&inputs(&post, &a, pre, &metrics), &cfg())?;
        same_report(&got, &want);
        // With a pre-period, CUPED applies to mean, proportion and ratio
        // metrics alike (except where the metric turns it off).
        let cuped = |name: &str| {
            got.metrics
                .iter()
                .filter(|r| r.metric == name)
                .all(|r| r.cuped)
        };
        assert_eq!(cuped("watch_time_per_user"), with_pre);
        assert_eq!(cuped("like_rate"), with_pre);
        assert_eq!(cuped("reels_like_rate"), with_pre);
        assert!(!cuped("watch_per_day"));
    }
    Ok(())
}

#[test]
fn dialects_differ_in_quoting_and_types_only() -> Res {
    let metrics = builtin_metrics();
    let t = SqlTables {
        events: "proj.logs.events".into(),
        assignments: "proj.exp.assignments".into(),
        pre_events: Some("proj.logs.pre".into()),
    };
    let ansi = warehouse_sql(&metrics, Dialect::Ansi, &t)?;
    let bq = warehouse_sql(&metrics, Dialect::Bigquery, &t)?;
    let spark = warehouse_sql(&metrics, Dialect::Spark, &t)?;
    assert!(ansi.contains("DOUBLE PRECISION") && ansi.contains("\"watch_ms\""));
    assert!(bq.contains("FLOAT64") && bq.contains("`watch_ms`") && !bq.contains("DOUBLE"));
    assert!(spark.contains("AS DOUBLE)") && spark.contains("`watch_ms`"));
    for s in [&ansi, &bq, &spark] {
        assert!(s.contains("FROM proj.logs.events") && s.contains("FROM proj.logs.pre"));
        assert!(s.contains("FROM proj.exp.assignments a"));
        assert_eq!(s.matches("UNION ALL").count(), metrics.len() - 1);
    }
    let normalise = |s: &str| {
        s.replace('`', "\"")
            .replace("FLOAT64", "DOUBLE PRECISION")
            .replace("AS DOUBLE)", "AS DOUBLE PRECISION)")
            .replace("(Bigquery)", "(Ansi)")
            .replace("(Spark)", "(Ansi)")
    };
    assert_eq!(normalise(&bq), ansi);
    assert_eq!(normalise(&spark), ansi);
    Ok(())
}

#[test]
fn metrics_that_need_every_user_are_refused() -> Res {
    for extra in [
        "cap_percentile = 0.99\nkind = \"mean\"",
        "kind = \"quantile\"\nquantile = 0.9",
    ] {
        let m = parse_metrics(&format!(
            "[[metric]]\nname = \"w\"\nnumerator = {{ agg = \"sum\", column = \"watch_ms\" }}\n{extra}\n"
        ))?;
        let e = warehouse_sql(&m, Dialect::Ansi, &SqlTables::default()).unwrap_err();
        assert!(
            e.to_string().contains("`w`") && e.to_string().contains("local pipeline"),
            "{e}"
        );
    }
    Ok(())
}

#[test]
fn bad_stats_files_are_named() -> Res {
    let dir = tempfile::tempdir()?;
    let metrics = &builtin_metrics()[..2];
    // A file of the 17 columns before the third moments were added: still read.
    let header = STATS_COLUMNS[..17].join(",");
    let row =
        |v: &str, m: &str, n: &str, x: &str| format!("{v},{m},{n},{x},1,0,0,0,0,0,0,0,0,0,0,0,0");
    let good = [
        row("control", "watch_time_per_user", "10", "5"),
        row("control", "impressions_per_user", "10", "7"),
        row("treatment", "watch_time_per_user", "12", "5"),
        row("treatment", "impressions_per_user", "12", "8"),
    ];
    let write = |name: &str, rows: &[String], header: &str| -> std::io::Result<PathBuf> {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{header}\n{}\n", rows.join("\n")))?;
        Ok(p)
    };
    let p = write("good.csv", &good, &header)?;
    let arms = read_stats(&p, metrics)?;
    assert_eq!(arms.len(), 2);
    assert_eq!(
        (arms[1].variant.as_str(), arms[1].sums[1].x),
        ("treatment", 8.0)
    );
    // Upper-case column names (as some warehouses export them) are accepted.
    let p = write("upper.csv", &good, &header.to_uppercase())?;
    assert_eq!(read_stats(&p, metrics)?.len(), 2);

    // The good rows with the control's `impressions_per_user` row replaced.
    let with_row1 = |r: String| {
        let mut rows = good.to_vec();
        rows[1] = r;
        rows
    };
    let cases: Vec<(&str, Vec<String>, String, &str)> = vec![
        (
            "missing_column.csv",
            good.iter()
                .map(|r| r.rsplit_once(',').map_or(r.clone(), |(a, _)| a.to_string()))
                .collect(),
            STATS_COLUMNS[..16].join(","),
            "missing column `sum_yq`",
        ),
        (
            "missing_row.csv",
            good[..3].to_vec(),
            header.clone(),
            "no row for metric `impressions_per_user`",
        ),
        (
            "duplicate.csv",
            [&good[..], &good[..1]].concat(),
            header.clone(),
            "has metric `watch_time_per_user` twice",
        ),
        (
            "unknown_metric.csv",
            [&good[..], &[row("control", "revenue", "10", "1")]].concat(),
            header.clone(),
            "metric `revenue` is not among",
        ),
        (
            "nan.csv",
            with_row1(row("control", "impressions_per_user", "10", "NaN")),
            header.clone(),
            "row 2: `sum_x` is NaN",
        ),
        (
            "mixed_n.csv",
            with_row1(row("control", "impressions_per_user", "11", "7")),
            header.clone(),
            "counts 11 users",
        ),
        (
            "text.csv",
            with_row1(row("control", "impressions_per_user", "10", "many")),
            header.clone(),
            "`sum_x` must be numeric",
        ),
    ];
    for (name, rows, header, needle) in cases {
        let p = write(name, &rows, &header)?;
        let e = read_stats(&p, metrics).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(name), "{name}: {e}");
    }
    Ok(())
}
