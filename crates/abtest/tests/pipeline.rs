//! The pipeline on the committed sample: report contract, agreement between the
//! polars aggregation and per-user sums, A/A calibration, bad input.

use reelkit_abtest::per_user::{cumulative_lift, event_days, quantile, segments, utc_date};
use reelkit_abtest::{
    analyze, builtin_metrics, parse_metrics,
    per_user::{arm_sums, user_values},
    statistics::{adjusted, cuped_theta, two_sided},
    AnalysisConfig, Correction, Error,
};
use reelkit_logs::Assignments;

mod common;
use common::{inputs, pre_and_post, sample, users};

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn split(users: &[u64], salt: u64) -> Assignments {
    Assignments {
        user_id: users.to_vec(),
        variant: users
            .iter()
            .map(|&u| {
                if mix(u ^ salt).is_multiple_of(2) {
                    "control"
                } else {
                    "treatment"
                }
                .to_string()
            })
            .collect(),
    }
}

fn cfg() -> AnalysisConfig {
    AnalysisConfig {
        experiment: "aa".into(),
        control: None,
        alpha: 0.05,
        correction: Correction::None,
        weights: None,
        sequential: None,
        comparisons: Vec::new(),
    }
}

#[test]
fn report_follows_the_contract() -> Result<(), Box<dyn std::error::Error>> {
    let users = users();
    let a = split(&users, 1);
    let metrics = builtin_metrics();
    let r = analyze(&inputs(&sample(), &a, None, &metrics), &cfg())?;
    assert_eq!(r.control, "control");
    assert_eq!(r.metrics.len(), metrics.len());
    assert_eq!(r.srm.counts.values().sum::<u64>() as usize, users.len());
    let json = serde_json::to_value(&r)?;
    for key in [
        "experiment",
        "control",
        "alpha",
        "correction",
        "srm",
        "metrics",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    for key in [
        "metric",
        "kind",
        "variant",
        "n_control",
        "n_variant",
        "control_mean",
        "variant_mean",
        "abs_effect",
        "abs_ci_low",
        "abs_ci_high",
        "rel_effect",
        "rel_ci_low",
        "rel_ci_high",
        "p_value",
        "p_value_adjusted",
        "significant",
        "cuped",
        "df",
    ] {
        assert!(json["metrics"][0].get(key).is_some(), "{key}");
    }
    for m in &r.metrics {
        assert!(
            m.test.p_value.is_finite()
                && m.test.abs_ci_low <= m.test.abs_effect
                && m.test.abs_effect <= m.test.abs_ci_high,
            "{m:?}"
        );
    }
    // Users with no events count as zeros: n is every assigned user.
    let watch = &r.metrics[0];
    assert_eq!(watch.n_control + watch.n_variant, users.len() as u64);
    Ok(())
}

#[test]
fn polars_sums_equal_per_user_sums() -> Result<(), Box<dyn std::error::Error>> {
    let a = split(&users(), 2);
    let metrics = builtin_metrics();
    let arms = arm_sums(&inputs(&sample(), &a, Some(&sample()), &metrics))?;
    let v = user_values(&inputs(&sample(), &a, Some(&sample()), &metrics), None)?;
    let names: Vec<&str> = arms.iter().map(|x| x.variant.as_str()).collect();
    let arm_of: Vec<usize> = v
        .variant
        .iter()
        .map(|s| names.iter().position(|n| n == s).unwrap_or(0))
        .collect();
    let sums = v.sums(&arm_of, arms.len());
    for (k, arm) in arms.iter().enumerate() {
        for (m, s) in arm.sums.iter().enumerate() {
            let t = &sums[k][m];
            for (got, want) in [
                (s.n, t.n),
                (s.x, t.x),
                (s.x2, t.x2),
                (s.y, t.y),
                (s.xy, t.xy),
                (s.p, t.p),
                (s.xp, t.xp),
            ] {
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{} {m}: {got} vs {want}",
                    arm.variant
                );
            }
        }
    }
    Ok(())
}

/// 1,000 random A/A splits of the sample: each test's false-positive rate at
/// α = 0.05 is calibrated.
#[test]
fn aa_false_positive_rate_is_calibrated() -> Result<(), Box<dyn std::error::Error>> {
    let users = users();
    let metrics = builtin_metrics();
    let v = user_values(&inputs(&sample(), &split(&users, 0), None, &metrics), None)?;
    let runs = 1000;
    let mut rejections = vec![0usize; metrics.len()];
    for r in 0..runs {
        let arm_of: Vec<usize> = v
            .user_id
            .iter()
            .map(|&u| (mix(u ^ ((r as u64 + 1) * 0x51ED)) % 2) as usize)
            .collect();
        let s = v.sums(&arm_of, 2);
        for (m, metric) in metrics.iter().enumerate() {
            let res = two_sided(
                &adjusted(metric.kind, &s[0][m], 0.0),
                &adjusted(metric.kind, &s[1][m], 0.0),
                0.05,
            );
            if res.p_value < 0.05 {
                rejections[m] += 1;
            }
        }
    }
    let rates: Vec<f64> = rejections.iter().map(|&k| k as f64 / runs as f64).collect();
    eprintln!(
        "A/A false-positive rates: {:?}",
        metrics
            .iter()
            .map(|m| &m.name)
            .zip(&rates)
            .collect::<Vec<_>>()
    );
    let pooled = rates.iter().sum::<f64>() / rates.len() as f64;
    assert!((0.035..=0.065).contains(&pooled), "pooled {pooled}");
    for (m, r) in metrics.iter().zip(&rates) {
        assert!((0.03..=0.075).contains(r), "{}: {r}", m.name);
    }
    Ok(())
}

#[test]
fn cuped_on_the_same_metric_narrows_the_interval() -> Result<(), Box<dyn std::error::Error>> {
    // Pre-period = the first week, experiment period = the second (same users).
    let dir = tempfile::tempdir()?;
    let (pre_p, post_p) = pre_and_post(dir.path())?;
    let a = split(&users(), 3);
    let metrics = builtin_metrics();
    let plain = analyze(&inputs(&post_p, &a, None, &metrics), &cfg())?;
    let cuped = analyze(&inputs(&post_p, &a, Some(&pre_p), &metrics), &cfg())?;
    let w =
        |r: &reelkit_abtest::Report| r.metrics[0].test.abs_ci_high - r.metrics[0].test.abs_ci_low;
    assert!(cuped.metrics[0].cuped && !plain.metrics[0].cuped);
    eprintln!(
        "watch time CI width: {} plain, {} CUPED",
        w(&plain),
        w(&cuped)
    );
    assert!(w(&cuped) < 0.9 * w(&plain));
    // Ratio metrics take CUPED too (GrowthBook's regression-adjusted ratio).
    let row = |r: &reelkit_abtest::Report, name: &str| {
        r.metrics
            .iter()
            .find(|m| m.metric == name)
            .map(|m| (m.cuped, m.test.abs_ci_high - m.test.abs_ci_low))
            .unwrap_or((false, f64::NAN))
    };
    for name in ["like_rate", "watch_time_per_session"] {
        let ((c0, w0), (c1, w1)) = (row(&plain, name), row(&cuped, name));
        eprintln!("{name} CI width: {w0} plain, {w1} CUPED");
        assert!(!c0 && c1, "{name}");
        assert!(w1 < w0, "{name}: {w1} vs {w0}");
    }
    // θ is pooled over both arms, as gbstats computes it.
    let arms = arm_sums(&inputs(&post_p, &a, Some(&pre_p), &metrics))?;
    let theta = cuped_theta(metrics[0].kind, &arms[0].sums[0], &arms[1].sums[0]);
    assert!((cuped.metrics[0].theta - theta).abs() < 1e-12);
    Ok(())
}

#[test]
fn bad_input_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
    let a = split(&users(), 4);
    let metrics = builtin_metrics();
    let mut c = cfg();
    c.control = Some("baseline".into());
    let e = analyze(&inputs(&sample(), &a, None, &metrics), &c).unwrap_err();
    assert!(
        matches!(e, Error::UnknownControl { .. }) && e.to_string().contains("baseline"),
        "{e}"
    );

    let mut c = cfg();
    c.weights = Some(
        [
            ("control".to_string(), 1.0),
            ("treatment".to_string(), 1.0),
            ("holdout".to_string(), 1.0),
        ]
        .into(),
    );
    let e = analyze(&inputs(&sample(), &a, None, &metrics), &c).unwrap_err();
    assert!(e.to_string().contains("holdout"), "{e}");

    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "user_id,session_id,ts_ms,video_id,creator_id,surface,duration_ms\n1,1,1,1,1,reels,5\n",
    )?;
    let e = analyze(&inputs(&bad, &a, None, &metrics), &cfg())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing column `watch_ms`") && e.contains("bad.csv"),
        "{e}"
    );

    let one_arm = Assignments {
        user_id: vec![1, 2],
        variant: vec!["control".into(), "control".into()],
    };
    assert!(analyze(&inputs(&sample(), &one_arm, None, &metrics), &cfg()).is_err());
    Ok(())
}

#[test]
fn a_degenerate_metric_is_defined() -> Result<(), Box<dyn std::error::Error>> {
    let m = parse_metrics(
        "[[metric]]\nname = 'nothing'\nkind = 'mean'\nnumerator = { agg = 'sum', column = 'position', surface = 'watch' }\n\
         [[metric]]\nname = 'const'\nkind = 'mean'\nnumerator = { agg = 'count', surface = 'watch' }\n",
    )?;
    // Users on a surface nobody... use a tiny assignment of users with no events at all.
    let a = Assignments {
        user_id: vec![1, 2, 3, 4],
        variant: vec![
            "control".into(),
            "treatment".into(),
            "control".into(),
            "treatment".into(),
        ],
    };
    // Read from the events, such assignments are refused: no event is theirs
    // (a report of zeros would pass for a result).
    let err = analyze(&inputs(&sample(), &a, None, &m), &cfg())
        .err()
        .ok_or("assignments with no event were analysed")?;
    assert!(
        matches!(
            err,
            reelkit_abtest::Error::NoOverlap {
                assigned: 4,
                first: 1,
                ..
            }
        ),
        "{err}"
    );
    // Their sums (every user 0) still give a defined report.
    let zero = |variant: &str| reelkit_abtest::per_user::ArmSums {
        variant: variant.into(),
        sums: vec![
            reelkit_abtest::statistics::Sums {
                n: 2.0,
                ..Default::default()
            };
            m.len()
        ],
        quantiles: vec![None; m.len()],
    };
    let r = reelkit_abtest::analyze_sums(&[zero("control"), zero("treatment")], &m, &cfg())?;
    for row in &r.metrics {
        assert_eq!(row.test.p_value, 1.0);
        assert!(row.test.message.is_some() && !row.significant);
        assert!(serde_json::to_string(row)?.find("NaN").is_none());
    }
    Ok(())
}

#[test]
fn cumulative_lift_ends_at_the_full_report() -> Result<(), Box<dyn std::error::Error>> {
    assert_eq!(utc_date(0), "1970-01-01");
    assert_eq!(utc_date(1_767_571_200_000), "2026-01-05");
    assert_eq!(utc_date(951_782_400_000), "2000-02-29");
    assert_eq!(utc_date(-1), "1969-12-31");

    let metrics = builtin_metrics();
    let a = split(&users(), 5);
    let full = analyze(&inputs(&sample(), &a, None, &metrics), &cfg())?;
    let daily = cumulative_lift(&inputs(&sample(), &a, None, &metrics), &cfg())?;
    let (first, last) = event_days(&reelkit_abtest::Source::from(&sample()))?.ok_or("no events")?;
    let days = ((last - first) / 86_400_000 + 1) as usize;
    assert_eq!(days, 14, "the sample spans two weeks");
    assert_eq!(daily.len(), days * metrics.len());
    assert_eq!(daily[0].date, utc_date(first));
    for row in &full.metrics {
        let end = daily
            .iter()
            .rev()
            .find(|d| d.metric == row.metric)
            .ok_or("metric missing")?;
        assert_eq!(end.date, utc_date(last));
        let tol = 1e-9 * row.test.rel_effect.abs().max(1e-9);
        assert!(
            (end.rel_effect - row.test.rel_effect).abs() <= tol,
            "{}: {} vs {}",
            row.metric,
            end.rel_effect,
            row.test.rel_effect
        );
    }
    // Earlier days see fewer impressions: the first day's watch time
    // interval is wider than the last's.
    let watch: Vec<_> = daily
        .iter()
        .filter(|d| d.metric == "watch_time_per_user")
        .collect();
    let width = |d: &reelkit_abtest::reporting::DailyLift| d.rel_ci_high - d.rel_ci_low;
    assert!(width(watch[0]) > width(watch[days - 1]));

    // One stray timestamp must not turn the daily loop into 3,650 passes
    // (ten years ahead) or an endless one (2^62).
    for (ts, says) in [
        (last + 3_650 * 86_400_000, "more than the 366"),
        (1i64 << 62, "not a Unix millisecond"),
        (1_767_571_200, "not a Unix millisecond"),
    ] {
        let mut ev = reelkit_logs::read_events(&sample())?;
        ev.ts_ms[7] = ts;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("events.parquet");
        reelkit_logs::write_events(&path, &ev)?;
        let err = cumulative_lift(&inputs(&path, &a, None, &metrics), &cfg())
            .err()
            .ok_or("a stray timestamp was accepted")?
            .to_string();
        assert!(err.contains(says) && err.contains("ts_ms"), "{err}");
    }
    Ok(())
}

#[test]
fn segments_partition_the_experiment() -> Result<(), Box<dyn std::error::Error>> {
    let metrics: Vec<_> = builtin_metrics()
        .into_iter()
        .filter(|m| m.name == "impressions_per_user" || m.name == "like_rate")
        .collect();
    let a = split(&users(), 9);
    let full = analyze(&inputs(&sample(), &a, None, &metrics), &cfg())?;
    let row = |rows: &[reelkit_abtest::MetricRow]| {
        rows.iter()
            .find(|r| r.metric == "impressions_per_user")
            .cloned()
            .ok_or("no impressions row")
    };
    let whole = row(&full.metrics)?;

    // Without a pre-period: the three surfaces, every assigned user in each;
    // impressions per user add up over the surfaces, arm by arm.
    let segs = segments(&inputs(&sample(), &a, None, &metrics), &cfg())?;
    let names: Vec<&str> = segs.iter().map(|s| s.segment.as_str()).collect();
    assert_eq!(names, ["surface=reels", "surface=feed", "surface=watch"]);
    let (mut c, mut v) = (0.0, 0.0);
    for s in &segs {
        let r = row(&s.metrics)?;
        assert_eq!(
            (r.n_control, r.n_variant),
            (whole.n_control, whole.n_variant)
        );
        c += r.test.control_mean;
        v += r.test.variant_mean;
    }
    assert!(
        (c - whole.test.control_mean).abs() < 1e-9 * c,
        "{c} vs {}",
        whole.test.control_mean
    );
    assert!((v - whole.test.variant_mean).abs() < 1e-9 * v);

    // With a pre-period (here the log itself): new users are those without
    // pre-period impressions, so they have none at all and their test is
    // uninformative; new and returning users partition each arm.
    let segs = segments(&inputs(&sample(), &a, Some(&sample()), &metrics), &cfg())?;
    let new = segs
        .iter()
        .find(|s| s.segment == "users=new")
        .ok_or("no new")?;
    let ret = segs
        .iter()
        .find(|s| s.segment == "users=returning")
        .ok_or("no returning")?;
    let (rn, rr) = (row(&new.metrics)?, row(&ret.metrics)?);
    assert_eq!(rn.n_control + rr.n_control, whole.n_control);
    assert_eq!(rn.n_variant + rr.n_variant, whole.n_variant);
    assert_eq!(rn.test.control_mean, 0.0);
    assert!(rn.test.message.is_some(), "{rn:?}");
    // The covariate is the same metric on the same log: θ = 1.
    assert!(rr.cuped && (rr.theta - 1.0).abs() < 1e-9, "{rr:?}");
    Ok(())
}

#[test]
fn capping_winsorises_at_the_percentile() -> Result<(), Box<dyn std::error::Error>> {
    // numpy.quantile(np.arange(1, 11), [0.9, 0.5, 0.0, 1.0]) = [9.1, 5.5, 1, 10]
    let v: Vec<f64> = (1..=10).map(f64::from).collect();
    assert!((quantile(&v, 0.9) - 9.1).abs() < 1e-12);
    assert!((quantile(&v, 0.5) - 5.5).abs() < 1e-12);
    assert_eq!((quantile(&v, 0.0), quantile(&v, 1.0)), (1.0, 10.0));

    let mut capped = parse_metrics(
        r#"
[[metric]]
name = "watch_capped"
kind = "mean"
numerator = { agg = "sum", column = "watch_ms", scale = 0.001 }
cap_percentile = 0.95
"#,
    )?;
    assert!(parse_metrics(
        r#"
[[metric]]
name = "bad"
kind = "mean"
numerator = { agg = "count" }
cap_percentile = 1.5
"#
    )
    .is_err_and(|e| e.to_string().contains("cap_percentile")));
    let a = split(&users(), 13);
    let mut plain = capped.clone();
    plain[0].cap_percentile = None;
    plain[0].name = "watch".into();
    let rc = analyze(&inputs(&sample(), &a, None, &capped), &cfg())?;
    let rp = analyze(&inputs(&sample(), &a, None, &plain), &cfg())?;
    let (c, p) = (&rc.metrics[0].test, &rp.metrics[0].test);
    assert!(c.control_mean < p.control_mean && c.variant_mean < p.variant_mean);
    assert!(
        c.abs_ci_high - c.abs_ci_low < 0.9 * (p.abs_ci_high - p.abs_ci_low),
        "capping narrows a heavy-tailed metric's interval"
    );
    // The per-user values after capping never exceed the 95th percentile.
    let mut values = user_values(&inputs(&sample(), &a, None, &plain), None)?;
    let q = quantile(&values.x[0], 0.95);
    assert_eq!(values.cap(0, 0.95), q);
    assert!(values.x[0].iter().all(|&x| x <= q));
    capped[0].cap_percentile = Some(0.5);
    let r50 = analyze(&inputs(&sample(), &a, None, &capped), &cfg())?;
    assert!(r50.metrics[0].test.control_mean < c.control_mean);
    Ok(())
}

#[test]
fn quantile_metrics_report_per_arm_quantiles() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = parse_metrics(
        r#"
[[metric]]
name = "watch_p90"
kind = "quantile"
quantile = 0.9
numerator = { agg = "sum", column = "watch_ms", scale = 0.001 }
"#,
    )?;
    assert!(parse_metrics(
        r#"
[[metric]]
name = "no_level"
kind = "quantile"
numerator = { agg = "count" }
"#
    )
    .is_err_and(|e| e.to_string().contains("quantile")));
    let a = split(&users(), 21);
    let r = analyze(&inputs(&sample(), &a, None, &metrics), &cfg())?;
    let row = &r.metrics[0];
    // The control "mean" is the control users' 90th percentile.
    let values = user_values(&inputs(&sample(), &a, None, &metrics), None)?;
    let control: Vec<f64> = values.x[0]
        .iter()
        .zip(&values.variant)
        .filter(|(_, v)| v.as_str() == "control")
        .map(|(&x, _)| x)
        .collect();
    assert!((row.test.control_mean - quantile(&control, 0.9)).abs() < 1e-9);
    assert!(row.test.message.is_none(), "{row:?}");
    assert!(
        row.test.abs_ci_low < row.test.abs_effect && row.test.abs_effect < row.test.abs_ci_high
    );
    // Warehouse sums carry no quantiles: a clear error.
    let sums = arm_sums(&inputs(&sample(), &a, None, &metrics))?;
    let err = reelkit_abtest::analyze_sums(&sums, &metrics, &cfg()).unwrap_err();
    assert!(err.to_string().contains("per-user values"), "{err}");
    Ok(())
}

#[test]
fn the_report_adds_users_in_id_order_so_runs_are_identical(
) -> Result<(), Box<dyn std::error::Error>> {
    // Sums added in one fixed order (user id) whatever the threads did: the
    // report equals, bit for bit, the one from per-user values sorted by hand.
    let a = split(&users(), 11);
    let metrics = builtin_metrics();
    let mut v = user_values(&inputs(&sample(), &a, None, &metrics), None)?;
    v.sort_by_user();
    let want = reelkit_abtest::analyze_sums(&v.arm_sums(&[]), &metrics, &cfg())?;
    for _ in 0..3 {
        let got = analyze(&inputs(&sample(), &a, None, &metrics), &cfg())?;
        assert_eq!(serde_json::to_string(&got)?, serde_json::to_string(&want)?);
    }
    Ok(())
}

/// The report's means are the arms' plain means, recomputed here with a
/// separate polars query over the per-user values, even where CUPED adjusts
/// the effects; the adjusted means are kept under their own names.
#[test]
fn report_means_are_plain_per_arm_means_under_cuped() -> Result<(), Box<dyn std::error::Error>> {
    use reelkit_logs::polars::prelude::*;
    let dir = tempfile::tempdir()?;
    let (pre, post) = pre_and_post(dir.path())?;
    let a = split(&users(), 5);
    let metrics = builtin_metrics();
    let r = analyze(&inputs(&post, &a, Some(&pre), &metrics), &cfg())?;

    let per_user = reelkit_logs::read_frame(&post)?
        .lazy()
        .group_by([col("user_id").cast(DataType::UInt64)])
        .agg([
            (col("watch_ms").cast(DataType::Float64).sum() * lit(0.001)).alias("watch"),
            len().cast(DataType::Float64).alias("impressions"),
            col("liked").cast(DataType::Float64).sum().alias("likes"),
        ]);
    let assigned = a
        .to_dataframe()?
        .lazy()
        .with_column(col("user_id").cast(DataType::UInt64));
    let arms = assigned
        .left_join(per_user, col("user_id"), col("user_id"))
        .group_by([col("variant")])
        .agg([
            col("watch").fill_null(lit(0.0)).mean().alias("watch"),
            col("impressions")
                .fill_null(lit(0.0))
                .mean()
                .alias("impressions"),
            (col("likes").fill_null(lit(0.0)).sum() / col("impressions").fill_null(lit(0.0)).sum())
                .alias("like_rate"),
        ])
        .collect()?;
    let mean = |variant: &str, column: &str| -> f64 {
        let vs = arms.column("variant").expect("variant");
        let row = (0..arms.height())
            .find(|&i| {
                vs.get(i)
                    .ok()
                    .and_then(|v| v.get_str().map(str::to_string))
                    .as_deref()
                    == Some(variant)
            })
            .expect("arm");
        arms.column(column)
            .expect("column")
            .get(row)
            .ok()
            .and_then(|v| v.extract::<f64>())
            .expect("number")
    };
    for (metric, column) in [
        ("watch_time_per_user", "watch"),
        ("impressions_per_user", "impressions"),
        ("like_rate", "like_rate"),
    ] {
        let row = r.metrics.iter().find(|m| m.metric == metric).expect("row");
        assert!(row.cuped, "{metric}: CUPED applies with a pre-period");
        for (got, want) in [
            (row.test.control_mean, mean("control", column)),
            (row.test.variant_mean, mean("treatment", column)),
        ] {
            assert!(
                (got - want).abs() <= 1e-9 * want.abs(),
                "{metric}: {got} vs {want}"
            );
        }
        let (ca, va) = (
            row.control_mean_adjusted.expect("adjusted control mean"),
            row.variant_mean_adjusted.expect("adjusted variant mean"),
        );
        // The effect is the adjusted means' difference, not the plain means'.
        assert!((row.test.abs_effect - (va - ca)).abs() <= 1e-9 * ca.abs().max(1.0));
        assert!((ca - row.test.control_mean).abs() > 1e-6 * row.test.control_mean.abs());
    }
    let json = serde_json::to_value(&r)?;
    assert!(json["metrics"][0].get("control_mean_adjusted").is_some());
    let md = reelkit_abtest::markdown(&r);
    let watch = r
        .metrics
        .iter()
        .find(|m| m.metric == "watch_time_per_user")
        .expect("row");
    assert!(
        md.contains(&format!("{:.1}", watch.test.control_mean)),
        "{md}"
    );
    Ok(())
}
