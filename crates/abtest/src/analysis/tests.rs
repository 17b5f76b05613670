//! Tests of the analysis (statistics against fixtures, decisions, segments).

use super::*;
use crate::stats::Sums;

/// One arm of a mean metric: n users, mean `mu`, variance exactly 1.
fn arm(name: &str, mu: f64) -> ArmSums {
    let n = 2_000.0;
    ArmSums {
        variant: name.into(),
        sums: vec![Sums {
            n,
            x: mu * n,
            x2: n * mu * mu + (n - 1.0),
            ..Sums::default()
        }],
        quantiles: vec![None],
    }
}

#[test]
fn a_significant_rise_is_a_regression_where_lower_is_better() -> Result<()> {
    let mut m = crate::builtin_metrics().remove(0);
    m.cuped = false;
    let arms = [arm("control", 10.0), arm("treatment", 10.3)];
    let cfg = AnalysisConfig::default();
    let up = analyze_sums(&arms, std::slice::from_ref(&m), &cfg)?;
    let row = &up.metrics[0];
    assert!(row.significant && row.improved() && !row.regressed());
    assert!(row.bayesian.chance_to_win > 0.99);
    m.goal.higher_is_better = false;
    let down = analyze_sums(&arms, std::slice::from_ref(&m), &cfg)?;
    let inv = &down.metrics[0];
    assert!(inv.significant && inv.regressed() && !inv.improved());
    // gbstats' inverse: the chance to win is the chance of a fall, and the
    // risks trade places.
    assert!((inv.bayesian.chance_to_win - (1.0 - row.bayesian.chance_to_win)).abs() < 1e-12);
    assert_eq!(inv.bayesian.risk_control, row.bayesian.risk_treatment);
    assert_eq!(inv.bayesian.risk_treatment, row.bayesian.risk_control);
    assert!(crate::markdown(&down).contains("significant regression (lower is better)"));
    assert!(crate::markdown(&up).contains("significant improvement"));
    // The built-in skip_rate knows it.
    assert!(crate::builtin_metrics()
        .iter()
        .any(|m| m.name == "skip_rate" && !m.goal.higher_is_better));
    Ok(())
}

/// Arm sums of a mean metric with n users, mean `mu`, variance exactly `var`.
fn arm_n(name: &str, n: f64, mu: f64, var: f64) -> Sums {
    let _ = name;
    Sums {
        n,
        x: mu * n,
        x2: n * mu * mu + (n - 1.0) * var,
        ..Sums::default()
    }
}

fn metrics_with_roles() -> Vec<Metric> {
    let base = crate::builtin_metrics();
    let pick = |name: &str| {
        let mut m = base
            .iter()
            .find(|m| m.name == name)
            .cloned()
            .expect("metric");
        m.cuped = false;
        m
    };
    // watch time: goal; skip rate: guardrail (may not rise more than 2%).
    vec![pick("watch_time_per_user"), {
        let mut m = pick("sessions_per_user");
        m.name = "skip_like".into();
        m.goal.higher_is_better = false;
        m.goal.tolerance = Some(0.02);
        m
    }]
}

fn two_arms(goal: (f64, f64), guard: (f64, f64), n: f64) -> Vec<ArmSums> {
    ["control", "treatment"]
        .iter()
        .enumerate()
        .map(|(k, v)| ArmSums {
            variant: v.to_string(),
            sums: vec![
                arm_n(v, n, if k == 0 { goal.0 } else { goal.1 }, 400.0),
                arm_n(v, n, if k == 0 { guard.0 } else { guard.1 }, 1.0),
            ],
            quantiles: vec![None, None],
        })
        .collect()
}

#[test]
fn a_guardrail_beyond_its_tolerance_stops_a_winning_goal() -> Result<()> {
    let metrics = metrics_with_roles();
    let cfg = AnalysisConfig::default();
    // Goal +3% (clearly significant); the guardrail rises 10% ± ~1%.
    let r = analyze_sums(
        &two_arms((100.0, 103.0), (5.0, 5.5), 20_000.0),
        &metrics,
        &cfg,
    )?;
    let d = &r.decisions[0];
    assert_eq!(d.verdict, Verdict::DontShip, "{d:?}");
    assert!(d
        .reasons
        .iter()
        .any(|s| s.contains("guardrail skip_like") && s.contains("regressed")));
    assert!(crate::markdown(&r).contains("**treatment vs control: don't ship**"));
    // The same rise within the tolerance (+1%, interval inside 2%): ship.
    let r = analyze_sums(
        &two_arms((100.0, 103.0), (5.0, 5.05), 20_000.0),
        &metrics,
        &cfg,
    )?;
    let d = &r.decisions[0];
    assert_eq!(d.verdict, Verdict::Ship, "{d:?}");
    assert!(
        r.metrics[1].regressed(),
        "significant, yet within the tolerance"
    );
    assert_eq!(r.metrics[1].guardrail(), Some(Guardrail::Holds));
    // A rise whose interval straddles the tolerance: keep running.
    let r = analyze_sums(
        &two_arms((100.0, 103.0), (5.0, 5.1), 20_000.0),
        &metrics,
        &cfg,
    )?;
    assert_eq!(r.metrics[1].guardrail(), Some(Guardrail::Unclear));
    assert_eq!(r.decisions[0].verdict, Verdict::KeepRunning);
    // A goal that loses: don't ship.
    let r = analyze_sums(
        &two_arms((100.0, 97.0), (5.0, 5.0), 20_000.0),
        &metrics,
        &cfg,
    )?;
    assert_eq!(r.decisions[0].verdict, Verdict::DontShip);
    assert!(r.decisions[0].reasons[0].contains("loss"));
    Ok(())
}

#[test]
fn nothing_significant_keeps_running_with_the_users_it_needs() -> Result<()> {
    let metrics = metrics_with_roles();
    let cfg = AnalysisConfig::default();
    // Goal +0.5% with σ = 20 on a mean of 100, 2,000 users per arm: z ≈ 1.8.
    let n = 2_000.0;
    let r = analyze_sums(&two_arms((100.0, 100.5), (5.0, 5.0), n), &metrics, &cfg)?;
    let d = &r.decisions[0];
    assert_eq!(d.verdict, Verdict::KeepRunning, "{d:?}");
    let more = d.more_users_needed.expect("users needed");
    assert!(d.reasons.iter().any(|s| s.contains("more users")));
    // With that many more users (same means and variances), the effect
    // sits at z_{1-α/2} + z_{0.8} = 2.80 standard errors: 80% power.
    let total = 2.0 * n + more;
    let r2 = analyze_sums(
        &two_arms((100.0, 100.5), (5.0, 5.0), total / 2.0),
        &metrics,
        &cfg,
    )?;
    let t = &r2.metrics[0].test;
    let se = (t.rel_ci_high - t.rel_ci_low) / (2.0 * 1.959_96);
    assert!(
        (t.rel_effect / se - 2.8016).abs() < 0.01,
        "{}",
        t.rel_effect / se
    );
    assert_eq!(r2.decisions[0].verdict, Verdict::Ship);
    // Without a goal metric there is no decision, and it says why.
    let secondary: Vec<Metric> = metrics
        .iter()
        .map(|m| Metric {
            goal: crate::metrics::Goal {
                role: crate::metrics::Role::Secondary,
                tolerance: None,
                ..m.goal
            },
            ..m.clone()
        })
        .collect();
    let r3 = analyze_sums(&two_arms((100.0, 100.5), (5.0, 5.0), n), &secondary, &cfg)?;
    assert_eq!(r3.decisions[0].verdict, Verdict::NoGoal);
    Ok(())
}

#[test]
fn skewness_and_the_sample_it_needs() {
    // Exponential-like values: 1, 1, 1, 1, 10 → skewness 1.5.
    let mut s = Sums::default();
    for _ in 0..200 {
        for x in [1.0, 1.0, 1.0, 1.0, 10.0] {
            s.push(x, 0.0, 0.0, 0.0);
        }
    }
    let sk = crate::stats::skewness(MetricKind::Mean, &s).expect("skew");
    assert!((sk - 1.5).abs() < 1e-9, "{sk}");
    assert!((crate::stats::users_for_normality(sk) - 798.75).abs() < 1e-9);
    // A ratio's linearisation: y = 1 everywhere makes it the mean's.
    let mut r = Sums::default();
    for _ in 0..200 {
        for x in [1.0, 1.0, 1.0, 1.0, 10.0] {
            r.push(x, 1.0, 0.0, 0.0);
        }
    }
    let rk = crate::stats::skewness(MetricKind::Ratio, &r).expect("skew");
    assert!((rk - 1.5).abs() < 1e-9, "{rk}");
    // A 10% proportion: (1 − 0.2) / sqrt(0.09) = 2.667.
    let p = Sums {
        n: 1000.0,
        x: 100.0,
        x2: 100.0,
        ..Sums::default()
    };
    let pk = crate::stats::skewness(MetricKind::Proportion, &p).expect("skew");
    assert!((pk - 0.8 / 0.3).abs() < 1e-12);
    // Flagged in a report when an arm has fewer users than 355·skew².
    let m = {
        let mut m = crate::builtin_metrics().remove(0);
        m.cuped = false;
        m
    };
    // 500 users per arm, the second shifted by 0.5.
    let (mut c, mut t) = (Sums::default(), Sums::default());
    for _ in 0..100 {
        for x in [1.0, 1.0, 1.0, 1.0, 10.0] {
            c.push(x, 0.0, 0.0, 0.0);
            t.push(x + 0.5, 0.0, 0.0, 0.0);
        }
    }
    let arms = |a: Sums, b: Sums| {
        [("control", a), ("treatment", b)].map(|(v, s)| ArmSums {
            variant: v.into(),
            sums: vec![s],
            quantiles: vec![None],
        })
    };
    let r = analyze_sums(
        &arms(c, t),
        std::slice::from_ref(&m),
        &AnalysisConfig::default(),
    )
    .expect("report");
    assert!(r.metrics[0].skewed, "500 users per arm < 799");
    assert!((r.metrics[0].users_for_normality.expect("need") - 798.75).abs() < 1e-6);
    assert!(crate::markdown(&r).contains("is skewed"));
    // 1,000 users per arm are enough.
    let r = analyze_sums(
        &arms(s, s),
        std::slice::from_ref(&m),
        &AnalysisConfig::default(),
    )
    .expect("report");
    assert!(!r.metrics[0].skewed);
}
