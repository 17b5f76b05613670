//! Calibration of the whole A/B pipeline on simulated experiments whose truth
//! is known: false-positive rate over A/A tests, coverage of the true effect by
//! the intervals, power, and how much CUPED narrows the intervals.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use reelkit_abtest::Correction;
use reelkit_logs::{Events, FileSet};
use reelkit_ranker::{Ranker, TrainParams};
use reelkit_sim::{
    builtin_policy, Arms, ExploreFresh, GroundTruth, Policy, Simulator, ValidSimParams, World,
    DEFAULT_EXPLORE,
};
use serde::Serialize;

use crate::online::{analyse, pretty_json, train_on_events, AnalyseOptions, CONTROL, TREATMENT};
use crate::RankerPolicy;

/// Settings of [`calibrate`].
#[derive(Debug, Clone)]
pub struct CalibrateConfig {
    pub world: ValidSimParams,
    /// Repetitions; each plays one A/A and one A/B experiment.
    pub runs: usize,
    pub pre_days: u32,
    pub days: u32,
    /// Treatment of the A/B experiments: `ranker` (trained once on a separate
    /// pre-period) or a built-in policy (`random`, `popular`, `oracle`).
    pub treatment: String,
    pub train: TrainParams,
    pub treatment_share: f64,
    pub alpha: f64,
}

/// One test of one metric in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub run: usize,
    /// `aa` or `ab`.
    pub kind: String,
    pub metric: String,
    pub cuped: bool,
    pub p_value: f64,
    pub abs_effect: f64,
    pub abs_ci_low: f64,
    pub abs_ci_high: f64,
    pub true_abs: f64,
    pub true_rel: f64,
}

impl Trial {
    fn covered(&self) -> bool {
        self.abs_ci_low <= self.true_abs && self.true_abs <= self.abs_ci_high
    }
}

/// Rates of one metric (or of all pooled) over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    pub metric: String,
    /// A/A: share of p-values below α (without CUPED / with CUPED).
    pub false_positive_rate: f64,
    pub false_positive_rate_cuped: f64,
    /// Share of intervals holding the true effect, A/A and A/B, plain and CUPED.
    pub coverage_aa: f64,
    pub coverage_aa_cuped: f64,
    pub coverage_ab: f64,
    pub coverage_ab_cuped: f64,
    /// A/B: share of significant results.
    pub power: f64,
    pub power_cuped: f64,
    /// Mean A/B interval width with CUPED over the mean without.
    pub cuped_width_ratio: f64,
    /// Mean true relative effect of the A/B experiments.
    pub mean_true_rel: f64,
}

/// `calibration.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub runs: usize,
    pub users: usize,
    pub pre_days: u32,
    pub days: u32,
    pub treatment: String,
    pub alpha: f64,
    /// Every metric pooled, then each metric.
    pub pooled: Rates,
    pub metrics: Vec<Rates>,
    /// A/A p-values (CUPED, every metric) in 20 bins of width 0.05.
    pub p_histogram_aa: Vec<u64>,
    #[serde(skip)]
    pub trials: Vec<Trial>,
}

fn treatment_policy(
    name: &str,
    ranker: Option<&Arc<Ranker>>,
    world: &World,
) -> anyhow::Result<Box<dyn Policy>> {
    match (name, ranker) {
        ("ranker", Some(r)) => Ok(Box::new(ExploreFresh::new(
            RankerPolicy::new(r.clone(), world, false),
            DEFAULT_EXPLORE,
        ))),
        ("ranker", None) => anyhow::bail!("the ranker treatment needs a trained ranker"),
        (other, _) => Ok(builtin_policy(other)?),
    }
}

fn rate(trials: &[&Trial], f: impl Fn(&Trial) -> bool) -> f64 {
    if trials.is_empty() {
        return 0.0;
    }
    trials.iter().filter(|t| f(t)).count() as f64 / trials.len() as f64
}

fn rates(metric: &str, trials: &[&Trial], alpha: f64) -> Rates {
    let pick = |kind: &str, cuped: bool| -> Vec<&Trial> {
        trials
            .iter()
            .copied()
            .filter(|t| t.kind == kind && t.cuped == cuped)
            .collect()
    };
    let (aa, aa_c, ab, ab_c) = (
        pick("aa", false),
        pick("aa", true),
        pick("ab", false),
        pick("ab", true),
    );
    let width = |ts: &[&Trial]| ts.iter().map(|t| t.abs_ci_high - t.abs_ci_low).sum::<f64>();
    let (w_plain, w_cuped) = (width(&ab), width(&ab_c));
    let rel: Vec<f64> = ab.iter().map(|t| t.true_rel).collect();
    Rates {
        metric: metric.to_string(),
        false_positive_rate: rate(&aa, |t| t.p_value < alpha),
        false_positive_rate_cuped: rate(&aa_c, |t| t.p_value < alpha),
        coverage_aa: rate(&aa, Trial::covered),
        coverage_aa_cuped: rate(&aa_c, Trial::covered),
        coverage_ab: rate(&ab, Trial::covered),
        coverage_ab_cuped: rate(&ab_c, Trial::covered),
        power: rate(&ab, |t| t.p_value < alpha),
        power_cuped: rate(&ab_c, |t| t.p_value < alpha),
        cuped_width_ratio: if w_plain > 0.0 {
            w_cuped / w_plain
        } else {
            1.0
        },
        mean_true_rel: if rel.is_empty() {
            0.0
        } else {
            rel.iter().sum::<f64>() / rel.len() as f64
        },
    }
}

/// One experiment of a run: simulate, write, analyse with and without CUPED,
/// and compare with the truth.
#[allow(clippy::too_many_arguments)]
fn one_experiment(
    cfg: &CalibrateConfig,
    world: &World,
    sim: &Simulator<'_>,
    treatment: &mut dyn Policy,
    salt: &str,
    kind: &str,
    run: usize,
    dir: &Path,
    pre_path: &Path,
) -> anyhow::Result<(Vec<Trial>, GroundTruth)> {
    let names = [CONTROL.to_string(), TREATMENT.to_string()];
    let arms = Arms::hashed(
        world,
        &names,
        &[1.0 - cfg.treatment_share, cfg.treatment_share],
        salt,
    )?;
    let mut control = builtin_policy("popular")?;
    let exp =
        sim.clone()
            .run_experiment(cfg.days, &mut [control.as_mut(), treatment], &arms, &|_| {})?;
    let truth = exp.ground_truth(world, CONTROL)?;
    let events_path = dir.join(format!("{kind}_events.arrow"));
    write_events(&events_path, &exp.events)?;
    let assignments = exp.assignments(world);
    let (with, without) = analyse(
        &events_path,
        pre_path,
        &assignments,
        &AnalyseOptions {
            treatment_share: cfg.treatment_share,
            alpha: cfg.alpha,
            correction: Correction::None,
            experiment: kind.to_string(),
            daily: false,
        },
    )?;
    let mut trials = Vec::new();
    for (report, cuped) in [(&without, false), (&with, true)] {
        for row in &report.metrics {
            let t = truth
                .effects
                .iter()
                .find(|e| e.metric == row.metric && e.variant == row.variant)
                .with_context(|| format!("no truth for {}", row.metric))?;
            trials.push(Trial {
                run,
                kind: kind.to_string(),
                metric: row.metric.clone(),
                cuped,
                p_value: row.test.p_value,
                abs_effect: row.test.abs_effect,
                abs_ci_low: row.test.abs_ci_low,
                abs_ci_high: row.test.abs_ci_high,
                true_abs: t.abs_effect,
                true_rel: t.rel_effect,
            });
        }
    }
    Ok((trials, truth))
}

fn write_events(path: &Path, events: &Events) -> anyhow::Result<()> {
    let mut set = FileSet::new();
    set.write_frame(path, &mut events.to_dataframe()?)?;
    set.commit()?;
    Ok(())
}

/// Runs `cfg.runs` pairs of simulated experiments on one world, each with its
/// own behavioural noise and salts, and measures the analysis against the truth.
pub fn calibrate(cfg: &CalibrateConfig, progress: &dyn Fn(usize)) -> anyhow::Result<Calibration> {
    anyhow::ensure!(cfg.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(cfg.pre_days >= 1, "the pre-period needs at least 1 day");
    anyhow::ensure!(cfg.days >= 1, "the experiment needs at least 1 day");
    anyhow::ensure!(
        cfg.treatment_share > 0.0 && cfg.treatment_share < 1.0,
        "the treatment share must be in (0, 1), got {}",
        cfg.treatment_share
    );
    let world = World::generate(&cfg.world);
    let seed = cfg.world.seed;
    // The ranker learns from a pre-period of its own noise, once.
    let ranker = if cfg.treatment == "ranker" {
        let mut sim = Simulator::new(&world).with_seed(reelkit_sim::splitmix64(seed ^ 0xCA1B));
        let mut popular = builtin_policy("popular")?;
        let history = sim.run(cfg.pre_days.max(2), popular.as_mut(), &|_| {})?;
        Some(Arc::new(Ranker::from_model(train_on_events(
            &history, &cfg.train,
        )?)))
    } else {
        builtin_policy(&cfg.treatment)?;
        None
    };
    let tmp = tempfile::tempdir().context("creating a scratch directory")?;
    let mut trials = Vec::new();
    let mut users = 0;
    for run in 0..cfg.runs {
        let run_seed = reelkit_sim::splitmix64(seed.wrapping_add(run as u64));
        let mut sim = Simulator::new(&world).with_seed(run_seed);
        let mut popular = builtin_policy("popular")?;
        let pre = sim.run(cfg.pre_days, popular.as_mut(), &|_| {})?;
        let pre_path = tmp.path().join("pre.arrow");
        write_events(&pre_path, &pre)?;

        let mut same = builtin_policy("popular")?;
        let (aa, truth) = one_experiment(
            cfg,
            &world,
            &sim,
            same.as_mut(),
            &format!("aa-{run}"),
            "aa",
            run,
            tmp.path(),
            &pre_path,
        )?;
        users = truth.users;
        trials.extend(aa);
        let mut treatment = treatment_policy(&cfg.treatment, ranker.as_ref(), &world)?;
        let (ab, _) = one_experiment(
            cfg,
            &world,
            &sim,
            treatment.as_mut(),
            &format!("ab-{run}"),
            "ab",
            run,
            tmp.path(),
            &pre_path,
        )?;
        trials.extend(ab);
        progress(run + 1);
    }

    let mut by_metric: BTreeMap<&str, Vec<&Trial>> = BTreeMap::new();
    for t in &trials {
        by_metric.entry(t.metric.as_str()).or_default().push(t);
    }
    // Keep the built-in order.
    let order: Vec<&str> = reelkit_sim::BUILTIN_METRICS.iter().map(|m| m.0).collect();
    let metrics: Vec<Rates> = order
        .iter()
        .filter_map(|m| by_metric.get(m).map(|ts| rates(m, ts, cfg.alpha)))
        .collect();
    let all: Vec<&Trial> = trials.iter().collect();
    let mut hist = vec![0u64; 20];
    for t in trials.iter().filter(|t| t.kind == "aa" && t.cuped) {
        let b = ((t.p_value * 20.0).floor() as usize).min(19);
        hist[b] += 1;
    }
    let mut pooled = rates("all metrics", &all, cfg.alpha);
    // A pooled width ratio mixes units; report watch time's instead.
    pooled.cuped_width_ratio = metrics
        .iter()
        .find(|r| r.metric == "watch_time_per_user")
        .map_or(1.0, |r| r.cuped_width_ratio);
    pooled.mean_true_rel = 0.0;
    Ok(Calibration {
        runs: cfg.runs,
        users,
        pre_days: cfg.pre_days,
        days: cfg.days,
        treatment: cfg.treatment.clone(),
        alpha: cfg.alpha,
        pooled,
        metrics,
        p_histogram_aa: hist,
        trials,
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The Markdown summary of a calibration.
pub fn calibration_markdown(c: &Calibration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# A/B calibration: {} runs, {} users, {}-day pre-period, {}-day experiments\n",
        c.runs, c.users, c.pre_days, c.days
    );
    let _ = writeln!(
        s,
        "Each run: one A/A test (`popular` vs `popular`) and one A/B test (`popular` vs `{}`), \
         new behavioural noise and salts; truth from common-random-number potential outcomes. \
         α = {}, no multiple-testing correction.\n",
        c.treatment, c.alpha
    );
    let _ = writeln!(
        s,
        "| metric | A/A FPR | A/A FPR (CUPED) | coverage A/A | coverage A/A (CUPED) | coverage A/B | coverage A/B (CUPED) | power | power (CUPED) | CUPED CI width | mean true Δ |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in std::iter::once(&c.pooled).chain(&c.metrics) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            r.metric,
            pct(r.false_positive_rate),
            pct(r.false_positive_rate_cuped),
            pct(r.coverage_aa),
            pct(r.coverage_aa_cuped),
            pct(r.coverage_ab),
            pct(r.coverage_ab_cuped),
            pct(r.power),
            pct(r.power_cuped),
            r.cuped_width_ratio,
            if r.metric == c.pooled.metric {
                "-".to_string()
            } else {
                format!("{:.4}", r.mean_true_rel)
            }
        );
    }
    s
}

/// Bar chart of the A/A p-value histogram (uniform under a calibrated test).
pub fn p_histogram_svg(c: &Calibration) -> String {
    let (w, h, left, bottom) = (520.0, 220.0, 40.0, 30.0);
    let max = c.p_histogram_aa.iter().copied().max().unwrap_or(1).max(1) as f64;
    let total: u64 = c.p_histogram_aa.iter().sum();
    let expected = total as f64 / 20.0;
    let bw = (w - left - 10.0) / 20.0;
    let y = |v: f64| h - bottom - v / max.max(expected) * (h - bottom - 20.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    for (i, &n) in c.p_histogram_aa.iter().enumerate() {
        let x = left + i as f64 * bw;
        let top = y(n as f64);
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>p in [{:.2}, {:.2}): {n}</title></rect>",
            bw - 1.0,
            h - bottom - top,
            if i == 0 { "#cf222e" } else { "#54aeff" },
            i as f64 * 0.05,
            (i + 1) as f64 * 0.05
        );
    }
    let ey = y(expected);
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{ey:.1}\" x2=\"{:.1}\" y2=\"{ey:.1}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">uniform</text>",
        w - 10.0,
        w - 10.0,
        ey - 4.0
    );
    for t in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t}</text>",
            left + t * 20.0 * bw,
            h - bottom + 14.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">A/A p-value (CUPED, all metrics)</text></svg>",
        left + 10.0 * bw,
        h - 4.0
    );
    s
}

/// Coverage of the true effect per metric (A/B, plain and CUPED) against the
/// nominal level.
pub fn coverage_svg(c: &Calibration) -> String {
    let row_h = 22.0;
    let (w, left, right) = (620.0, 200.0, 20.0);
    let h = 40.0 + row_h * c.metrics.len() as f64;
    let lo = 0.8;
    let x = |v: f64| left + ((v - lo) / (1.0 - lo)).clamp(0.0, 1.0) * (w - left - right);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let nominal = x(1.0 - c.alpha);
    let _ = write!(
        s,
        "<line x1=\"{nominal:.1}\" y1=\"16\" x2=\"{nominal:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-dasharray=\"4 3\"/>\
<text x=\"{nominal:.1}\" y=\"12\" text-anchor=\"middle\">nominal {}</text>",
        h - 6.0,
        pct(1.0 - c.alpha)
    );
    for t in [0.8, 0.85, 0.9, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#666\">{}</text>",
            x(t),
            h - 2.0,
            pct(t)
        );
    }
    for (k, r) in c.metrics.iter().enumerate() {
        let y = 26.0 + row_h * k as f64;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"7\" fill=\"#8c959f\"><title>plain {}</title></rect>\
<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"7\" fill=\"#1a7f37\"><title>CUPED {}</title></rect>",
            left - 8.0,
            y + 8.0,
            r.metric,
            y,
            x(r.coverage_ab) - left,
            pct(r.coverage_ab),
            y + 8.0,
            x(r.coverage_ab_cuped) - left,
            pct(r.coverage_ab_cuped)
        );
    }
    s.push_str("</svg>");
    s
}

/// Writes `calibration.json`, `calibration.md`, `calibration.html` and
/// `trials.csv` into `dir`, all or nothing.
pub fn write_calibration(dir: &Path, c: &Calibration) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = pretty_json(c)?;
    let md = calibration_markdown(c);
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>A/B calibration</title><style>\
body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>\
<h1>A/B calibration</h1><p>{} runs of an A/A and an A/B (`popular` vs `{}`) experiment, {} users, α = {}.</p>\
<h2>A/A p-values</h2>{}<h2>Coverage of the true effect (A/B; grey plain, green CUPED)</h2>{}\
<h2>Table</h2><pre>{}</pre></body></html>\n",
        c.runs,
        c.treatment,
        c.users,
        c.alpha,
        p_histogram_svg(c),
        coverage_svg(c),
        md.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut csv = String::from(
        "run,kind,metric,cuped,p_value,abs_effect,abs_ci_low,abs_ci_high,true_abs,true_rel\n",
    );
    for t in &c.trials {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
            t.run,
            t.kind,
            t.metric,
            t.cuped,
            t.p_value,
            t.abs_effect,
            t.abs_ci_low,
            t.abs_ci_high,
            t.true_abs,
            t.true_rel
        );
    }
    let mut set = FileSet::new();
    for (name, bytes) in [
        ("calibration.json", json),
        ("calibration.md", md.into_bytes()),
        ("calibration.html", html.into_bytes()),
        ("trials.csv", csv.into_bytes()),
    ] {
        set.write(&dir.join(name), |w| std::io::Write::write_all(w, &bytes))?;
    }
    set.commit()
        .with_context(|| format!("writing the calibration to {}", dir.display()))?;
    Ok(())
}
