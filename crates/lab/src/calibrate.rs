//! Calibration of a design against the simulator's truth: the spec's
//! experiment repeated with fresh behavioural noise and salts, each run once
//! as an A/A test (every arm on the control's recipe: the truth is exactly
//! zero) and once as specified. Measures the false-positive rate, the
//! coverage of the true effect by the intervals, the power, and how much
//! CUPED narrows the intervals, for every comparison.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;
use reelkit_abtest::Report;
use reelkit_logs::files::FileSet;
use reelkit_sim::{random::splitmix64, World};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::pretty_json;
use crate::run::{analyse, simulate};
use crate::spec::{Arm, ExperimentSpec, ValidSpec};
use crate::truth::{ground_truth, GroundTruth, ALL};

/// The design `reelkit ab calibrate` runs without a spec: `popular` as the
/// control against a treatment, on a world scaled to `users` (five videos
/// and half a creator per user, an upload a day per thirteen users).
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationDesign {
    /// Users of the world.
    pub users: usize,
    /// The treatment's recipe, or `ranker`: the frozen iALS ranker of
    /// earlier releases (unified, trained once on the pre-period, ranking by
    /// the dot product).
    pub treatment: String,
    /// The treatment's share of users, in (0, 1).
    pub treatment_share: f64,
    /// Seed of the world and of every run's noise.
    pub seed: u64,
    /// Days before the experiment (training data, CUPED covariates).
    pub pre_days: u32,
    /// Days of the experiment.
    pub days: u32,
    /// Significance level.
    pub alpha: f64,
}

impl Default for CalibrationDesign {
    fn default() -> Self {
        CalibrationDesign {
            users: 1_000,
            treatment: "ranker".into(),
            treatment_share: 0.5,
            seed: 42,
            pre_days: 3,
            days: 4,
            alpha: 0.05,
        }
    }
}

impl CalibrationDesign {
    /// The experiment spec of this design (checked by
    /// [`ExperimentSpec::check`] like any other).
    pub fn spec(&self) -> Result<ExperimentSpec> {
        use toml::{Table, Value};
        let int = |n: usize| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let table = |pairs: Vec<(&str, Value)>| {
            Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let u = self.users;
        let mut treatment = vec![("name", Value::String("treatment".into()))];
        if self.treatment == "ranker" {
            treatment.extend([
                ("recipe", Value::String("unified".into())),
                ("retrain", Value::String("never".into())),
                ("ranking", Value::String("dot".into())),
            ]);
        } else {
            treatment.push(("recipe", Value::String(self.treatment.clone())));
        }
        treatment.push(("share", Value::Float(self.treatment_share)));
        let mut doc = Table::new();
        doc.insert("name".into(), Value::String("calibration".into()));
        doc.insert("seed".into(), Value::Integer(self.seed as i64));
        doc.insert(
            "world".into(),
            table(vec![
                ("users", int(u)),
                ("videos", int((u * 5).max(500))),
                ("creators", int((u / 2).max(50))),
                ("new_videos_per_day", int((u / 13).max(10))),
            ]),
        );
        doc.insert(
            "pre_period".into(),
            table(vec![("days", Value::Integer(self.pre_days.into()))]),
        );
        doc.insert(
            "experiment".into(),
            table(vec![("days", Value::Integer(self.days.into()))]),
        );
        doc.insert(
            "arms".into(),
            Value::Array(vec![
                table(vec![
                    ("name", Value::String("control".into())),
                    ("recipe", Value::String("popular".into())),
                    ("share", Value::Float(1.0 - self.treatment_share)),
                ]),
                table(treatment),
            ]),
        );
        doc.insert(
            "analysis".into(),
            table(vec![("alpha", Value::Float(self.alpha))]),
        );
        ExperimentSpec::from_toml(&doc.to_string(), Path::new("."))
    }
}

/// One test of one comparison and metric in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The 0-based run.
    pub run: usize,
    /// `aa` or `ab`.
    pub kind: String,
    /// The variant's arm.
    pub variant: String,
    /// The arm it is compared with.
    pub baseline: String,
    /// The metric's name.
    pub metric: String,
    /// Whether CUPED adjusted the estimate.
    pub cuped: bool,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Estimated absolute effect (variant − baseline).
    pub abs_effect: f64,
    /// Lower end of its confidence interval.
    pub abs_ci_low: f64,
    /// Upper end of its confidence interval.
    pub abs_ci_high: f64,
    /// True absolute effect in this run (from the potential outcomes).
    pub true_abs: f64,
    /// True relative effect in this run.
    pub true_rel: f64,
}

impl Trial {
    fn covered(&self) -> bool {
        self.abs_ci_low <= self.true_abs && self.true_abs <= self.abs_ci_high
    }
}

/// Rates over the runs of one group of trials (a comparison's metric, a
/// comparison pooled, or everything pooled).
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    /// `variant vs baseline`, or `all comparisons`.
    pub comparison: String,
    /// A metric, or `all metrics`.
    pub metric: String,
    /// A/A: share of p-values below α (without CUPED / with CUPED).
    pub false_positive_rate: f64,
    /// A/A with CUPED: share of p-values below α.
    pub false_positive_rate_cuped: f64,
    /// Share of intervals holding the true effect, A/A and A/B, plain and CUPED.
    pub coverage_aa: f64,
    /// A/A with CUPED.
    pub coverage_aa_cuped: f64,
    /// A/B without CUPED.
    pub coverage_ab: f64,
    /// A/B with CUPED.
    pub coverage_ab_cuped: f64,
    /// A/B: share of significant results.
    pub power: f64,
    /// A/B with CUPED.
    pub power_cuped: f64,
    /// Mean A/B interval width with CUPED over the mean without (one metric
    /// only: widths of different metrics do not add).
    pub cuped_width_ratio: Option<f64>,
    /// Mean true relative effect in the A/B runs (one metric only).
    pub mean_true_rel: Option<f64>,
}

/// `calibration.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// The spec's name.
    pub name: String,
    /// Runs of each kind (A/A and A/B).
    pub runs: usize,
    /// Users per run.
    pub users: usize,
    /// Pre-period days (CUPED's covariate window).
    pub pre_days: u32,
    /// Experiment days.
    pub days: u32,
    /// Significance level of the tests.
    pub alpha: f64,
    /// The arms of the A/B runs (`name: recipe`); the A/A runs put every arm
    /// on the control's recipe.
    pub arms: Vec<String>,
    /// The control arm.
    pub control: String,
    /// Everything pooled, then each comparison pooled over its metrics.
    pub pooled: Vec<Rates>,
    /// Each comparison and metric.
    pub metrics: Vec<Rates>,
    /// A/A p-values (CUPED, every comparison and metric) in 20 bins of width 0.05.
    pub p_histogram_aa: Vec<u64>,
    #[serde(skip)]
    /// Every trial (not in the JSON; `calibration_markdown` and callers read it).
    pub trials: Vec<Trial>,
}

fn rate(trials: &[&Trial], f: impl Fn(&Trial) -> bool) -> f64 {
    if trials.is_empty() {
        return 0.0;
    }
    trials.iter().filter(|t| f(t)).count() as f64 / trials.len() as f64
}

fn rates(comparison: &str, metric: &str, trials: &[&Trial], alpha: f64, one_metric: bool) -> Rates {
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
    Rates {
        comparison: comparison.to_string(),
        metric: metric.to_string(),
        false_positive_rate: rate(&aa, |t| t.p_value < alpha),
        false_positive_rate_cuped: rate(&aa_c, |t| t.p_value < alpha),
        coverage_aa: rate(&aa, Trial::covered),
        coverage_aa_cuped: rate(&aa_c, Trial::covered),
        coverage_ab: rate(&ab, Trial::covered),
        coverage_ab_cuped: rate(&ab_c, Trial::covered),
        power: rate(&ab, |t| t.p_value < alpha),
        power_cuped: rate(&ab_c, |t| t.p_value < alpha),
        cuped_width_ratio: (one_metric && w_plain > 0.0).then(|| w_cuped / w_plain),
        mean_true_rel: (one_metric && !ab.is_empty())
            .then(|| ab.iter().map(|t| t.true_rel).sum::<f64>() / ab.len() as f64),
    }
}

fn trials_of(
    run: usize,
    kind: &str,
    reports: [(&Report, bool); 2],
    truth: &GroundTruth,
) -> Result<Vec<Trial>> {
    let mut out = Vec::new();
    for (report, cuped) in reports {
        for row in &report.metrics {
            let t = truth
                .get(&row.variant, &row.control, &row.metric, ALL)
                .ok_or_else(|| Error::Arm {
                    arm: row.variant.clone(),
                    message: format!("no truth for {} against {}", row.metric, row.control),
                })?;
            out.push(Trial {
                run,
                kind: kind.to_string(),
                variant: row.variant.clone(),
                baseline: row.control.clone(),
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
    Ok(out)
}

/// Runs `f(0..runs)` in parallel, at most one run per thread in flight (a
/// plain parallel iterator lets a thread that waits inside a run's own
/// parallel loops start yet another run, and memory grows with every run
/// started), results in run order.
pub(crate) fn par_runs<T: Send>(
    runs: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let width = rayon::current_num_threads().max(1);
    let mut out = Vec::with_capacity(runs);
    let mut start = 0;
    while start < runs {
        let end = (start + width).min(runs);
        let chunk: Vec<T> = (start..end)
            .into_par_iter()
            .map(&f)
            .collect::<Result<_>>()?;
        out.extend(chunk);
        start = end;
    }
    Ok(out)
}

/// Repeats the spec's experiment `runs` times on one world (run `r` plays
/// with behavioural noise seeded from the spec's seed and `r`, and its own
/// salts), each as an A/A and as specified, and measures the analysis
/// against the truth. Tests are uncorrected (each at α) so that the rates are
/// per test. `progress` receives the number of runs done.
pub fn calibrate(
    spec: &ValidSpec,
    runs: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Calibration> {
    if runs == 0 {
        return Err(Error::spec("runs", "must be at least 1, got 0"));
    }
    let mut spec = spec.clone();
    spec.correction = reelkit_abtest::Correction::None;
    let world = World::generate(&spec.world);
    let ab: Vec<Arm> = spec.arms.clone();
    let aa: Vec<Arm> = vec![spec.arms[spec.control].clone(); spec.arms.len()];
    // Runs are independent: they go in parallel, and their trials are kept in
    // run order, so the result does not depend on the number of threads.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let per_run: Vec<(Vec<Trial>, usize)> = par_runs(runs, |run| -> Result<(Vec<Trial>, usize)> {
        let seed = splitmix64(spec.world.seed.wrapping_add(run as u64));
        let mut trials = Vec::new();
        let mut users = 0;
        for (kind, plays) in [("aa", &aa), ("ab", &ab)] {
            let sim = simulate(
                &spec,
                &world,
                seed,
                &format!("{kind}-{run}"),
                plays,
                &|_| {},
            )?;
            let truth = ground_truth(&world, &sim.exp, &spec.metrics, &spec.comparisons)?;
            let assignments = sim.exp.assignments(&world);
            users = assignments.len();
            let (with, without) =
                analyse(&spec, &sim.pre_events, &sim.exp.events, &assignments, false)?;
            trials.extend(trials_of(
                run,
                kind,
                [(&without, false), (&with, true)],
                &truth,
            )?);
        }
        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        Ok((trials, users))
    })?;
    let users = per_run.first().map_or(0, |r| r.1);
    let trials: Vec<Trial> = per_run.into_iter().flat_map(|r| r.0).collect();
    let comparisons: Vec<String> = spec
        .comparisons()
        .iter()
        .map(|(v, b)| format!("{v} vs {b}"))
        .collect();
    let label = |t: &Trial| format!("{} vs {}", t.variant, t.baseline);
    let mut metrics = Vec::new();
    let mut pooled = Vec::new();
    let all: Vec<&Trial> = trials.iter().collect();
    pooled.push(rates(
        "all comparisons",
        "all metrics",
        &all,
        spec.alpha,
        false,
    ));
    for c in &comparisons {
        let of_c: Vec<&Trial> = trials.iter().filter(|t| &label(t) == c).collect();
        pooled.push(rates(c, "all metrics", &of_c, spec.alpha, false));
        for m in &spec.metrics {
            let ts: Vec<&Trial> = of_c
                .iter()
                .copied()
                .filter(|t| t.metric == m.name)
                .collect();
            metrics.push(rates(c, &m.name, &ts, spec.alpha, true));
        }
    }
    let mut hist = vec![0u64; 20];
    for t in trials.iter().filter(|t| t.kind == "aa" && t.cuped) {
        let b = ((t.p_value * 20.0).floor() as usize).min(19);
        hist[b] += 1;
    }
    Ok(Calibration {
        name: spec.name.clone(),
        runs,
        users,
        pre_days: spec.pre_days,
        days: spec.days,
        alpha: spec.alpha,
        arms: spec
            .arms
            .iter()
            .map(|a| format!("{}: {}", a.name, a.recipe.name()))
            .collect(),
        control: spec.arms[spec.control].name.clone(),
        pooled,
        metrics,
        p_histogram_aa: hist,
        trials,
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The calibration's table: one row per group of trials.
fn table(c: &Calibration) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let head = vec![
        "comparison",
        "metric",
        "A/A FPR",
        "A/A FPR (CUPED)",
        "coverage A/A",
        "coverage A/A (CUPED)",
        "coverage A/B",
        "coverage A/B (CUPED)",
        "power",
        "power (CUPED)",
        "CUPED CI width",
        "mean true Δ",
    ];
    let rows = c
        .pooled
        .iter()
        .chain(&c.metrics)
        .map(|r| {
            vec![
                r.comparison.clone(),
                r.metric.clone(),
                pct(r.false_positive_rate),
                pct(r.false_positive_rate_cuped),
                pct(r.coverage_aa),
                pct(r.coverage_aa_cuped),
                pct(r.coverage_ab),
                pct(r.coverage_ab_cuped),
                pct(r.power),
                pct(r.power_cuped),
                r.cuped_width_ratio
                    .map_or("-".into(), |x| format!("{x:.2}")),
                r.mean_true_rel
                    .map_or("-".into(), |x| format!("{:+.2}%", 100.0 * x)),
            ]
        })
        .collect();
    (head, rows)
}

/// The Markdown summary of a calibration.
pub fn calibration_markdown(c: &Calibration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Calibration of `{}`: {} runs, {} users, {}-day pre-period, {}-day experiments\n",
        c.name, c.runs, c.users, c.pre_days, c.days
    );
    let _ = writeln!(
        s,
        "Each run: one A/A test (every arm on the control `{}`'s recipe) and one test of the arms {}, \
         with new behavioural noise and salts; truth from common-random-number potential outcomes. \
         α = {}, no multiple-testing correction.\n",
        c.control,
        c.arms.join(", "),
        c.alpha
    );
    let (head, rows) = table(c);
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---:|".repeat(head.len() - 2));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Bar chart of the A/A p-value histogram (uniform under a calibrated test).
fn p_histogram_svg(c: &Calibration) -> String {
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
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">A/A p-value (CUPED, every comparison and metric)</text></svg>",
        left + 10.0 * bw,
        h - 4.0
    );
    s
}

/// Coverage of the true effect per comparison and metric (A/B, plain and
/// CUPED) against the nominal level.
fn coverage_svg(c: &Calibration) -> String {
    let row_h = 22.0;
    let (w, left, right) = (720.0, 300.0, 20.0);
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
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} · {}</text>\
<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"7\" fill=\"#8c959f\"><title>plain {}</title></rect>\
<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"7\" fill=\"#1a7f37\"><title>CUPED {}</title></rect>",
            left - 8.0,
            y + 8.0,
            esc(&r.comparison),
            esc(&r.metric),
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
pub fn write_calibration(dir: &Path, c: &Calibration) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = pretty_json("calibration", c)?;
    let md = calibration_markdown(c);
    let (head, rows) = table(c);
    let mut html_table = String::from("<table><tr>");
    for h in &head {
        let _ = write!(html_table, "<th>{}</th>", esc(h));
    }
    html_table.push_str("</tr>\n");
    for r in rows {
        html_table.push_str("<tr>");
        for cell in r {
            let _ = write!(html_table, "<td>{}</td>", esc(&cell));
        }
        html_table.push_str("</tr>\n");
    }
    html_table.push_str("</table>");
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Calibration of {name}</title><style>\
body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}td:nth-child(-n+2){{text-align:left}}</style></head><body>\
<h1>Calibration of {name}</h1><p>{runs} runs of an A/A experiment (every arm on the control <b>{control}</b>'s recipe) \
and of the arms {arms}; {users} users, α = {alpha}, no multiple-testing correction.</p>\
<h2>A/A p-values</h2>{hist}<h2>Coverage of the true effect (A/B; grey plain, green CUPED)</h2>{cov}\
<h2>Rates</h2>{html_table}</body></html>\n",
        name = esc(&c.name),
        runs = c.runs,
        control = esc(&c.control),
        arms = esc(&c.arms.join(", ")),
        users = c.users,
        alpha = c.alpha,
        hist = p_histogram_svg(c),
        cov = coverage_svg(c),
    );
    let mut csv = String::from(
        "run,kind,variant,baseline,metric,cuped,p_value,abs_effect,abs_ci_low,abs_ci_high,true_abs,true_rel\n",
    );
    for t in &c.trials {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            t.run,
            t.kind,
            t.variant,
            t.baseline,
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
        set.write_bytes(&dir.join(name), &bytes)?;
    }
    set.commit()?;
    Ok(())
}

/// Pooled rates by comparison name, for callers that check thresholds.
#[allow(dead_code)]
pub(crate) fn pooled_by_comparison(c: &Calibration) -> BTreeMap<&str, &Rates> {
    c.pooled
        .iter()
        .map(|r| (r.comparison.as_str(), r))
        .collect()
}

#[cfg(test)]
mod design_tests {
    use super::*;

    /// The spec `reelkit ab calibrate` wrote as TOML text before the design
    /// moved here, for the default flags and for `--treatment oracle
    /// --users 300 --treatment-share 0.25`.
    fn as_text(users: usize, treatment: &str, share: f64) -> String {
        format!(
            "name = \"calibration\"\nseed = 42\n\n[world]\nusers = {users}\nvideos = {}\n\
             creators = {}\nnew_videos_per_day = {}\n\n[pre_period]\ndays = 3\n\n\
             [experiment]\ndays = 4\n\n[[arms]]\nname = \"control\"\nrecipe = \"popular\"\nshare = {}\n\n\
             [[arms]]\nname = \"treatment\"\n{treatment}\nshare = {share}\n\n[analysis]\nalpha = 0.05\n",
            (users * 5).max(500),
            (users / 2).max(50),
            (users / 13).max(10),
            1.0 - share,
        )
    }

    #[test]
    fn the_design_is_the_spec_the_command_wrote() -> Result<()> {
        let cases = [
            (
                CalibrationDesign::default(),
                as_text(
                    1_000,
                    "recipe = \"unified\"\nretrain = \"never\"\nranking = \"dot\"",
                    0.5,
                ),
            ),
            (
                CalibrationDesign {
                    users: 300,
                    treatment: "oracle".into(),
                    treatment_share: 0.25,
                    ..CalibrationDesign::default()
                },
                as_text(300, "recipe = \"oracle\"", 0.25),
            ),
        ];
        for (design, text) in cases {
            let want = ExperimentSpec::from_toml(&text, Path::new("."))?.check()?;
            let got = design.spec()?.check()?;
            assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
        // A treatment that is no recipe is refused by the spec's check.
        let bad = CalibrationDesign {
            treatment: "magic".into(),
            ..CalibrationDesign::default()
        };
        assert!(bad.spec().and_then(|s| s.check()).is_err());
        Ok(())
    }
}
