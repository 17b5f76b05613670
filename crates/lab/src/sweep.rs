//! Sweeps: one experiment rerun over the values of one spec key, every
//! estimate beside its truth, and a chart of both against the key.

use std::fmt::Write as _;
use std::path::Path;

use reelkit_logs::files::FileSet;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::{pretty_json, summary_markdown};
use crate::run::{run, Summary};
use crate::spec::{ExperimentSpec, ValidSpec};
use crate::truth::ALL;

/// One value × comparison × metric × segment of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// The swept key's value, as written.
    pub value: String,
    /// The variant arm.
    pub variant: String,
    /// The arm it is compared with.
    pub baseline: String,
    /// The metric's name.
    pub metric: String,
    /// `all` or `surface=…`.
    pub segment: String,
    /// True relative effect.
    pub true_rel: f64,
    /// Estimated relative effect.
    pub est_rel: f64,
    /// Lower end of the relative confidence interval.
    pub ci_low: f64,
    /// Upper end of the relative confidence interval.
    pub ci_high: f64,
    /// The interval holds the truth (on the absolute scale, as in the summary).
    pub covered: bool,
    /// Significant after the multiple-comparison adjustment.
    pub significant: bool,
}

/// `sweep.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// The swept key (`world.surface_taste_divergence`).
    pub param: String,
    /// The values swept, as written, in order.
    pub values: Vec<String>,
    /// The significance level of every run (`None` when the sweep varies it).
    pub alpha: Option<f64>,
    /// Every value × comparison × metric × segment.
    pub rows: Vec<SweepRow>,
    /// Each value's run summary.
    #[serde(skip)]
    pub summaries: Vec<Summary>,
}

/// The spec with `param` set to each value, every one checked before
/// anything runs (an unknown key or a value out of range is an error naming
/// the key and what it allows).
pub fn sweep_specs(
    spec: &ExperimentSpec,
    param: &str,
    values: &[String],
) -> Result<Vec<ValidSpec>> {
    if values.is_empty() {
        return Err(Error::spec(param, "a sweep needs at least one value"));
    }
    values
        .iter()
        .map(|v| {
            let mut s = spec.clone();
            s.set(param, crate::spec::parse_value(v))?;
            s.check().map_err(|e| match e {
                Error::Spec { key, message } => Error::Spec {
                    key,
                    message: format!("{message} (sweep value `{v}` of `{param}`)"),
                },
                Error::Parse { what, message } => Error::Parse {
                    what: format!("{what} with `{param} = {v}`"),
                    message,
                },
                other => other,
            })
        })
        .collect()
}

/// Runs every checked spec of a sweep in turn.
pub fn sweep(
    param: &str,
    values: &[String],
    specs: &[ValidSpec],
    log: &dyn Fn(&str),
) -> Result<Sweep> {
    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    for (v, spec) in values.iter().zip(specs) {
        log(&format!("{param} = {v}"));
        let outcome = run(spec, log)?;
        for e in &outcome.summary.estimates {
            rows.push(SweepRow {
                value: v.clone(),
                variant: e.variant.clone(),
                baseline: e.baseline.clone(),
                metric: e.metric.clone(),
                segment: e.segment.clone(),
                true_rel: e.true_rel,
                est_rel: e.estimate_rel,
                ci_low: e.rel_ci_low,
                ci_high: e.rel_ci_high,
                covered: e.covered,
                significant: e.significant,
            });
        }
        summaries.push(outcome.summary);
    }
    let alpha = specs
        .first()
        .map(|s| s.alpha)
        .filter(|a| specs.iter().all(|s| s.alpha == *a));
    Ok(Sweep {
        param: param.to_string(),
        values: values.to_vec(),
        alpha,
        rows,
        summaries,
    })
}

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// The metric a sweep's chart and table show: watch time per user if there.
fn lead(s: &Sweep) -> Option<&str> {
    s.rows
        .iter()
        .find(|r| r.metric == "watch_time_per_user")
        .or_else(|| s.rows.first())
        .map(|r| r.metric.as_str())
}

/// The comparisons of a sweep, in order: named pairs first.
fn pairs(s: &Sweep) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in &s.rows {
        if !out.contains(&(r.variant.as_str(), r.baseline.as_str())) {
            out.push((&r.variant, &r.baseline));
        }
    }
    let control = s
        .summaries
        .first()
        .map(|x| x.control.as_str())
        .unwrap_or("");
    out.sort_by_key(|p| p.1 == control);
    out
}

/// Markdown: per comparison, the lead metric's estimate and truth at each value.
pub fn sweep_markdown(s: &Sweep) -> String {
    let mut out = String::new();
    let Some(metric) = lead(s) else {
        return out;
    };
    let _ = writeln!(out, "# Sweep of `{}`: `{metric}`\n", s.param);
    for (v, b) in pairs(s) {
        let _ = writeln!(out, "## `{v}` vs `{b}`\n");
        let _ = writeln!(
            out,
            "| {} | segment | estimated lift | CI | true lift | truth in CI |",
            s.param
        );
        let _ = writeln!(out, "|---|---|---:|---|---:|:-:|");
        for r in s
            .rows
            .iter()
            .filter(|r| r.variant == v && r.baseline == b && r.metric == metric)
        {
            let _ = writeln!(
                out,
                "| {} | {} | {} | [{}, {}] | {} | {} |",
                r.value,
                r.segment,
                pct(r.est_rel),
                pct(r.ci_low),
                pct(r.ci_high),
                pct(r.true_rel),
                if r.covered { "yes" } else { "**no**" }
            );
        }
        out.push('\n');
    }
    out
}

const COLOURS: [&str; 6] = [
    "#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a",
];

/// An SVG chart: for each comparison, the lead metric's estimated relative
/// lift with its interval (bars) and the true lift (diamonds on a line),
/// against the swept value (numeric values to scale, others evenly spaced).
fn sweep_svg(s: &Sweep) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 380.0, 70.0, 200.0, 30.0, 50.0);
    let Some(metric) = lead(s) else {
        return String::new();
    };
    let rows: Vec<&SweepRow> = s
        .rows
        .iter()
        .filter(|r| r.metric == metric && r.segment == ALL)
        .collect();
    let numeric: Option<Vec<f64>> = s
        .values
        .iter()
        .map(|v| v.trim().parse::<f64>().ok())
        .collect();
    let xs: Vec<f64> = match &numeric {
        Some(n) if n.len() > 1 => {
            let (lo, hi) = n
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            n.iter()
                .map(|x| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 })
                .collect()
        }
        _ => (0..s.values.len())
            .map(|i| {
                if s.values.len() > 1 {
                    i as f64 / (s.values.len() - 1) as f64
                } else {
                    0.5
                }
            })
            .collect(),
    };
    let fin = |x: f64| if x.is_finite() { x } else { 0.0 };
    let lo = rows
        .iter()
        .map(|r| fin(r.ci_low).min(fin(r.true_rel)))
        .fold(0.0f64, f64::min);
    let hi = rows
        .iter()
        .map(|r| fin(r.ci_high).max(fin(r.true_rel)))
        .fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let px = |t: f64| left + 20.0 + t * (w - left - right - 40.0);
    let py = |v: f64| top + (hi - fin(v)) / (hi - lo) * (h - top - bottom);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
<text x=\"{left}\" y=\"18\" font-size=\"13\">{}: estimated lift with its {} interval (dot and bar), true lift (◇), against {}</text>",
        esc(metric),
        s.alpha.map_or("confidence".to_string(), |a| format!("{}%", (100.0 * (1.0 - a)).round())),
        esc(&s.param)
    );
    // Axes: zero line and ticks.
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{z:.1}\" x2=\"{:.1}\" y2=\"{z:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\
<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"#000\"/>",
        w - right,
        h - bottom,
        z = py(0.0)
    );
    for v in nice_ticks(lo, hi) {
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{left}\" y2=\"{y:.1}\" stroke=\"#000\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            left - 6.0,
            py(v) + 4.0,
            if v == 0.0 {
                "0%".to_string()
            } else {
                pct_short(v)
            },
            y = py(v),
        );
    }
    for (v, &x) in s.values.iter().zip(&xs) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            px(x),
            h - bottom + 18.0,
            esc(v)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        px(0.5),
        h - 10.0,
        esc(&s.param)
    );
    for (k, (v, b)) in pairs(s).into_iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let dx = (k as f64 - 1.0) * 6.0;
        let series: Vec<(f64, &SweepRow)> = s
            .values
            .iter()
            .zip(&xs)
            .filter_map(|(val, &x)| {
                rows.iter()
                    .find(|r| &r.value == val && r.variant == v && r.baseline == b)
                    .map(|r| (x, *r))
            })
            .collect();
        let line: Vec<String> = series
            .iter()
            .map(|(x, r)| format!("{:.1},{:.1}", px(*x) + dx, py(r.true_rel)))
            .collect();
        let _ = write!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-opacity=\"0.5\"/>",
            line.join(" ")
        );
        for (x, r) in &series {
            let cx = px(*x) + dx;
            let _ = write!(
                out,
                "<line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-width=\"2\"/>\
<circle cx=\"{cx:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{c}\"><title>{v} vs {b} at {}: estimated {} [{}, {}]</title></circle>\
<path d=\"M{cx:.1} {:.1} l5 5 l-5 5 l-5 -5 z\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\"><title>true {}</title></path>",
                py(r.ci_low),
                py(r.ci_high),
                py(r.est_rel),
                esc(&r.value),
                pct(r.est_rel),
                pct(r.ci_low),
                pct(r.ci_high),
                py(r.true_rel) - 5.0,
                pct(r.true_rel)
            );
        }
        let ly = top + 10.0 + 18.0 * k as f64;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{:.1}\">{} vs {}</text>",
            w - right + 10.0,
            ly - 4.0,
            w - right + 28.0,
            ly + 2.0,
            esc(v),
            esc(b)
        );
    }
    out.push_str("</svg>");
    out
}

/// Percent with as few decimals as a round tick needs.
fn pct_short(x: f64) -> String {
    let p = 100.0 * x;
    if (p - p.round()).abs() < 1e-9 {
        format!("{:+.0}%", p)
    } else {
        format!("{:+.1}%", p)
    }
}

/// Round tick values inside `[lo, hi]`: multiples of the smallest step of 1,
/// 2 or 5 × 10ⁿ that makes at most seven intervals (zero is one of them).
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let mut k = span.log10().floor() as i32 - 2;
    let step = loop {
        let base = 10f64.powi(k);
        if let Some(s) = [1.0, 2.0, 5.0]
            .iter()
            .map(|m| m * base)
            .find(|s| span / s <= 7.0)
        {
            break s;
        }
        k += 1;
    };
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Rounded to the step's decimals, so labels do not show 0.6000000000000001.
    let digits = (-step.log10().floor()).max(0.0) as i32 + 2;
    let scale = 10f64.powi(digits);
    (first..=last)
        .map(|i| (i as f64 * step * scale).round() / scale)
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `sweep.json`, `sweep.md`, `sweep.svg` and each value's
/// `summary.md`/`summary.json` under `<param>=<value>/`, all or nothing.
pub fn write_sweep(dir: &Path, s: &Sweep) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut set = FileSet::new();
    let json = pretty_json("sweep", s)?;
    let md = sweep_markdown(s);
    let svg = sweep_svg(s);
    for (name, bytes) in [
        ("sweep.json", json),
        ("sweep.md", md.into_bytes()),
        ("sweep.svg", svg.into_bytes()),
    ] {
        set.write_bytes(&dir.join(name), &bytes)?;
    }
    for (v, summary) in s.values.iter().zip(&s.summaries) {
        let sub = dir.join(format!("{}={}", s.param, v.replace(['/', '\\'], "_")));
        std::fs::create_dir_all(&sub).map_err(|source| Error::Io {
            path: sub.clone(),
            source,
        })?;
        let json = pretty_json("summary", summary)?;
        let md = summary_markdown(summary);
        set.write(&sub.join("summary.json"), |w| {
            std::io::Write::write_all(w, &json)
        })?;
        set.write(&sub.join("summary.md"), |w| {
            std::io::Write::write_all(w, md.as_bytes())
        })?;
    }
    set.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(-0.1249, 1.0785),
            vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(-0.031, 0.047), vec![-0.02, 0.0, 0.02, 0.04]);
        assert_eq!(
            nice_ticks(0.0, 7.0),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        );
        assert_eq!(pct_short(0.2), "+20%");
        assert_eq!(pct_short(-0.015), "-1.5%");
    }
}
