//! Writing reports: `report.json` (the contract) and `report.md`, atomically.

use std::fmt::Write as _;
use std::path::Path;

use reelkit_logs::files::FileSet;

use crate::analysis::{Guardrail, MetricRow, Report, Verdict};
use crate::error::{Error, Result};
use crate::metrics::Role;
use crate::text::pct;

/// How a comparison is named: the variant alone when it is compared with the
/// report's control, `variant vs baseline` otherwise.
fn arm_label(variant: &str, control: &str, report_control: &str) -> String {
    if control.is_empty() || control == report_control {
        variant.to_string()
    } else {
        format!("{variant} vs {control}")
    }
}

/// A number in a table: four decimals for small values, fewer for large ones.
fn num(x: f64) -> String {
    num_at(x, x.abs())
}

/// `x` with the decimals that suit numbers of size `scale` (so a value and
/// its interval share them).
fn num_at(x: f64, scale: f64) -> String {
    if !x.is_finite() {
        format!("{x}")
    } else if scale >= 1000.0 {
        format!("{x:.1}")
    } else if scale >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

/// The metric's name with its role, when it has one that decides.
fn metric_label(m: &MetricRow) -> String {
    match m.goal.role {
        Role::Secondary => m.metric.clone(),
        role => format!("{} ({role})", m.metric),
    }
}

/// The verdict cell: direction-aware, with the skewness flag.
fn verdict(m: &MetricRow) -> String {
    let mut v = match (&m.test.message, m.improved(), m.regressed()) {
        (Some(msg), _, _) => msg.clone(),
        (None, true, _) => "significant improvement".into(),
        (None, _, true) if m.goal.higher_is_better => "significant regression".into(),
        (None, _, true) => "significant regression (lower is better)".into(),
        (None, _, _) => String::new(),
    };
    match m.guardrail() {
        Some(Guardrail::Fails) if m.goal.tolerance.is_some() => {
            push_sep(&mut v, "guardrail fails: beyond its tolerance")
        }
        Some(Guardrail::Fails) => push_sep(&mut v, "guardrail fails"),
        Some(Guardrail::Unclear) => push_sep(&mut v, "guardrail not yet within tolerance"),
        _ => {}
    }
    if m.skewed {
        let need = m.users_for_normality.unwrap_or(f64::NAN);
        push_sep(
            &mut v,
            &format!("⚠ skewed: wants ≥ {need:.0} users per arm"),
        );
    }
    v
}

fn push_sep(v: &mut String, s: &str) {
    if !v.is_empty() {
        v.push_str("; ");
    }
    v.push_str(s);
}

/// The column heads of the metric tables.
const HEADS: [&str; 11] = [
    "metric",
    "variant",
    "control mean",
    "variant mean",
    "Δ absolute [CI]",
    "Δ relative [CI]",
    "p",
    "p adj.",
    "chance to win",
    "CUPED",
    "",
];

/// The table cells of one row: metric, variant, the arms' plain means, the
/// absolute and relative effects with their intervals, p, adjusted p, chance
/// to win, CUPED, and a verdict.
fn cells(m: &MetricRow, report_control: &str) -> [String; 11] {
    [
        metric_label(m),
        arm_label(&m.variant, &m.control, report_control),
        num(m.test.control_mean),
        num(m.test.variant_mean),
        {
            let t = &m.test;
            let scale = t
                .abs_effect
                .abs()
                .max(t.abs_ci_low.abs())
                .max(t.abs_ci_high.abs());
            format!(
                "{} [{}, {}]",
                signed(t.abs_effect, scale),
                signed(t.abs_ci_low, scale),
                signed(t.abs_ci_high, scale)
            )
        },
        format!(
            "{} [{}, {}]",
            pct(m.test.rel_effect),
            pct(m.test.rel_ci_low),
            pct(m.test.rel_ci_high)
        ),
        format!("{:.4}", m.test.p_value),
        format!("{:.4}", m.p_value_adjusted),
        format!("{:.1}%", 100.0 * m.bayesian.chance_to_win),
        if m.cuped {
            format!("yes (θ = {:.3})", m.theta)
        } else {
            "no".to_string()
        },
        verdict(m),
    ]
}

fn signed(x: f64, scale: f64) -> String {
    let s = num_at(x, scale);
    if x >= 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

/// What the table's numbers are, under every metric table.
const LEGEND: &str = "Means are the arms' plain means (ratios: Σ numerator / Σ denominator). \
Effects and intervals are CUPED-adjusted where the CUPED column says yes (the adjusted \
means are in report.json as `control_mean_adjusted`, `variant_mean_adjusted`). Verdicts \
follow each metric's direction: a fall of a lower-is-better metric is an improvement.";

fn md_table(s: &mut String, rows: &[MetricRow], report_control: &str, ci_head: &str) {
    let heads: Vec<String> = HEADS.iter().map(|h| h.replace("[CI]", ci_head)).collect();
    let _ = writeln!(s, "| {} |", heads.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEADS.len()));
    for m in rows {
        let _ = writeln!(s, "| {} |", cells(m, report_control).join(" | "));
    }
}

/// The decision block in Markdown.
fn md_decisions(s: &mut String, r: &Report) {
    if r.decisions.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Decision\n");
    for d in &r.decisions {
        let _ = writeln!(
            s,
            "**{}: {}**\n",
            arm_label(&d.variant, &d.control, ""),
            d.verdict
        );
        for reason in &d.reasons {
            let _ = writeln!(s, "- {reason}");
        }
        s.push('\n');
    }
}

/// The skewness warnings in Markdown (or HTML list items).
fn skew_notes(r: &Report) -> Vec<String> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for m in r.metrics.iter().filter(|m| m.skewed) {
        if seen.contains(&&m.metric) {
            continue;
        }
        seen.push(&m.metric);
        let n = m.n_control.min(m.n_variant);
        out.push(format!(
            "`{}` is skewed (skewness {:.1}): Kohavi's rule wants at least 355·skewness² = {:.0} \
             users per arm for the normal approximation, and the smaller arm has {n}. Its p-value \
             and interval may be off (false positives above α). Cap it (`cap_percentile = 0.99`), \
             use CUPED with a pre-period, or run until each arm has that many users.",
            m.metric,
            m.skewness.unwrap_or(f64::NAN),
            m.users_for_normality.unwrap_or(f64::NAN),
        ));
    }
    out
}

/// The Markdown rendering of a report.
pub fn markdown(r: &Report) -> String {
    // Names come from the user's files: `<script>` as an arm must be text in
    // every renderer, and `|` must not split a table cell.
    let safe = md_safe(r);
    let r = safe.as_ref().unwrap_or(r);
    let mut s = String::new();
    let _ = writeln!(s, "# Experiment `{}`\n", r.experiment);
    let _ = writeln!(
        s,
        "Control `{}`, α = {}, correction: {}.\n",
        r.control, r.alpha, r.correction
    );
    md_decisions(&mut s, r);
    for n in &r.notes {
        let _ = writeln!(s, "> {n}\n");
    }
    let counts: Vec<String> = r
        .srm
        .counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        s,
        "**SRM** {} — users {}; χ² = {:.3}, p = {:.4}.\n",
        if r.srm.ok {
            "ok"
        } else {
            "MISMATCH: do not trust the results"
        },
        counts.join(", "),
        r.srm.chi2,
        r.srm.p_value
    );
    let ci = format!("[{}% CI]", (100.0 * (1.0 - r.alpha)).round());
    let _ = writeln!(s, "## Metrics\n");
    md_table(&mut s, &r.metrics, &r.control, &ci);
    let _ = writeln!(s, "\n{LEGEND}\n");
    for note in skew_notes(r) {
        let _ = writeln!(s, "> ⚠ {note}\n");
    }
    for seg in &r.segments {
        let _ = writeln!(s, "\n## Segment `{}`\n", seg.segment);
        md_table(&mut s, &seg.metrics, &r.control, &ci);
    }
    if !r.daily.is_empty() {
        let mut cols: Vec<(&str, &str, &str)> = Vec::new();
        let mut dates: Vec<&str> = Vec::new();
        for d in &r.daily {
            let key = (d.metric.as_str(), d.variant.as_str(), d.control.as_str());
            if !cols.contains(&key) {
                cols.push(key);
            }
            if !dates.contains(&d.date.as_str()) {
                dates.push(&d.date);
            }
        }
        let _ = writeln!(s, "\n## Cumulative relative lift by day\n");
        let head: Vec<String> = cols
            .iter()
            .map(|(m, v, c)| format!("{m} ({})", arm_label(v, c, &r.control)))
            .collect();
        let _ = writeln!(s, "| date | {} |", head.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(cols.len()));
        for date in dates {
            let row: Vec<String> = cols
                .iter()
                .map(|(m, v, c)| {
                    r.daily
                        .iter()
                        .find(|d| {
                            d.date == date && d.metric == *m && d.variant == *v && d.control == *c
                        })
                        .map_or(String::new(), |d| pct(d.rel_effect))
                })
                .collect();
            let _ = writeln!(s, "| {date} | {} |", row.join(" | "));
        }
    }
    s
}

/// The report with every string made inert in Markdown (HTML special
/// characters as entities, `|` and backticks escaped); `None` when no string
/// needs it (or the round trip fails: then the report is used as it is).
fn md_safe(r: &Report) -> Option<Report> {
    fn inert(s: &str) -> Option<String> {
        s.contains(['&', '<', '>', '|', '`']).then(|| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('|', "\\|")
                .replace('`', "'")
        })
    }
    fn walk(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => match inert(s) {
                Some(t) => {
                    *s = t;
                    true
                }
                None => false,
            },
            // Every element is walked (no short circuit).
            serde_json::Value::Array(a) => a.iter_mut().map(walk).filter(|&c| c).count() > 0,
            serde_json::Value::Object(o) => {
                let mut changed = false;
                let entries: Vec<(String, serde_json::Value)> = std::mem::take(o)
                    .into_iter()
                    .map(|(k, mut x)| {
                        changed |= walk(&mut x);
                        match inert(&k) {
                            Some(t) => {
                                changed = true;
                                (t, x)
                            }
                            None => (k, x),
                        }
                    })
                    .collect();
                o.extend(entries);
                changed
            }
            _ => false,
        }
    }
    let mut v = serde_json::to_value(r).ok()?;
    if !walk(&mut v) {
        return None;
    }
    serde_json::from_value(v).ok()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A forest plot of relative lifts with their intervals, as inline SVG.
pub fn forest_svg(r: &Report) -> String {
    forest_svg_with_truth(r, &[])
}

/// A known true relative lift of one (metric, variant), drawn on the forest
/// plot (simulated experiments know it).
#[derive(Debug, Clone, PartialEq)]
pub struct TrueLift {
    /// The metric.
    pub metric: String,
    /// The variant arm.
    pub variant: String,
    /// The baseline of the comparison (the report's control for arm-vs-control rows).
    pub control: String,
    /// The true relative lift.
    pub rel_effect: f64,
}

/// Tick positions (and their step) covering `[lo, hi]`: steps of 1, 2, 2.5
/// or 5 times a power of ten, four to eight ticks.
fn ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    let span = (hi - lo).max(1e-9);
    let raw = span / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|k| k * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// A tick's label in percent with as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let p = 100.0 * step;
    let decimals = if p >= 1.0 && (p - p.round()).abs() < 1e-9 {
        0
    } else if p >= 0.1 {
        1
    } else {
        2
    };
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if v > 0.0 {
        format!("+{:.*}%", decimals, 100.0 * v)
    } else {
        format!("{:.*}%", decimals, 100.0 * v)
    }
}

/// The forest plot with each row's true lift marked by a black diamond: one
/// panel per role (goal, guardrails, secondary), the relative axis in percent
/// with ticks, each guardrail's tolerance as a red bar on the bad side.
pub fn forest_svg_with_truth(r: &Report, truth: &[TrueLift]) -> String {
    let truth_of = |m: &MetricRow| {
        truth
            .iter()
            .find(|t| t.metric == m.metric && t.variant == m.variant && t.control == m.control)
            .map(|t| t.rel_effect)
    };
    // The bad-side tolerance as a relative change.
    let tol_of = |m: &MetricRow| {
        m.goal
            .tolerance
            .filter(|_| m.goal.role == Role::Guardrail)
            .map(|t| if m.goal.higher_is_better { -t } else { t })
    };
    let groups: Vec<(&str, Vec<&MetricRow>)> = [
        (Role::Goal, "Goal"),
        (Role::Guardrail, "Guardrails"),
        (Role::Secondary, "Secondary"),
    ]
    .into_iter()
    .map(|(role, title)| {
        (
            title,
            r.metrics.iter().filter(|m| m.goal.role == role).collect(),
        )
    })
    .filter(|(_, rows): &(&str, Vec<&MetricRow>)| !rows.is_empty())
    .collect();
    let (w, row_h, head_h, left, right, top) = (820.0, 24.0, 26.0, 280.0, 30.0, 34.0);
    let n_rows: usize = groups.iter().map(|(_, g)| g.len()).sum();
    let h = top + head_h * groups.len() as f64 + row_h * n_rows as f64 + 36.0;
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for m in &r.metrics {
        for v in [m.test.rel_ci_low, m.test.rel_ci_high]
            .into_iter()
            .chain(truth_of(m))
            .chain(tol_of(m))
        {
            lo = lo.min(finite(v));
            hi = hi.max(finite(v));
        }
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |v: f64| left + (finite(v) - lo) / (hi - lo) * (w - left - right);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let bottom = h - 30.0;
    let (tick_values, step) = ticks(lo, hi);
    for t in &tick_values {
        let tx = x(*t);
        let zero = t.abs() < step * 1e-6;
        s.push_str(&format!(
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{bottom:.1}\" stroke=\"{}\"{}/>",
            top - 6.0,
            if zero { "#888" } else { "#e1e4e8" },
            if zero {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            }
        ));
        let label = tick_label(*t, step);
        for ty in [top - 10.0, bottom + 14.0] {
            s.push_str(&format!(
                "<text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" fill=\"#444\">{label}</text>"
            ));
        }
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">relative change vs baseline ({}% intervals)</text>",
        (left + w - right) / 2.0,
        h - 2.0,
        (100.0 * (1.0 - r.alpha)).round()
    ));
    let mut y0 = top;
    for (title, rows) in &groups {
        s.push_str(&format!(
            "<text x=\"8\" y=\"{:.1}\" font-weight=\"bold\">{title}</text><line x1=\"8\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d0d7de\"/>",
            y0 + 17.0,
            y0 + head_h - 2.0,
            w - right,
            y0 + head_h - 2.0
        ));
        y0 += head_h;
        for m in rows {
            let y = y0 + row_h / 2.0;
            y0 += row_h;
            let color = if m.improved() {
                "#1a7f37"
            } else if m.regressed() {
                "#cf222e"
            } else {
                "#57606a"
            };
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} · {}</text>",
                left - 10.0,
                y + 4.0,
                esc(&m.metric),
                esc(&arm_label(&m.variant, &m.control, &r.control))
            ));
            if let Some(t) = tol_of(m) {
                let tx = x(t);
                s.push_str(&format!(
                    "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-width=\"2\"><title>tolerance: {} may not {} more than {}</title></line>",
                    y - 9.0,
                    y + 9.0,
                    esc(&m.metric),
                    if m.goal.higher_is_better { "fall" } else { "rise" },
                    pct(t.abs())
                ));
            }
            s.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>",
                x(m.test.rel_ci_low),
                x(m.test.rel_ci_high)
            ));
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{color}\"><title>{}: {} [{}, {}], p = {:.4}</title></circle>",
                x(m.test.rel_effect),
                esc(&m.metric),
                pct(m.test.rel_effect),
                pct(m.test.rel_ci_low),
                pct(m.test.rel_ci_high),
                m.p_value_adjusted
            ));
            if let Some(t) = truth_of(m) {
                let cx = x(t);
                s.push_str(&format!(
                    "<path d=\"M{:.1} {:.1} l5 5 l-5 5 l-5 -5 z\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.5\"><title>true lift {}</title></path>",
                    cx,
                    y - 5.0,
                    pct(t)
                ));
            }
        }
    }
    let mut legend = Vec::new();
    if !truth.is_empty() {
        legend.push("◇ true lift (simulation ground truth)");
    }
    if r.metrics.iter().any(|m| tol_of(m).is_some()) {
        legend.push("red bar: guardrail tolerance");
    }
    if !legend.is_empty() {
        s.push_str(&format!(
            "<text x=\"8\" y=\"{:.1}\" fill=\"#444\">{}</text>",
            h - 2.0,
            legend.join(" · ")
        ));
    }
    s.push_str("</svg>");
    s
}

/// Cumulative relative lift by day, one small chart per (metric, variant):
/// the estimate as a line, its interval as a band, zero dashed.
pub fn daily_svg(r: &Report) -> String {
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    for d in &r.daily {
        let key = (d.metric.as_str(), d.variant.as_str(), d.control.as_str());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let (w, h, pad) = (300.0, 150.0, 30.0);
    let mut out = String::new();
    for (metric, variant, control) in keys {
        let pts: Vec<&crate::analysis::DailyLift> = r
            .daily
            .iter()
            .filter(|d| d.metric == metric && d.variant == variant && d.control == control)
            .collect();
        let fin = |x: f64| if x.is_finite() { x } else { 0.0 };
        let lo = pts.iter().map(|p| fin(p.rel_ci_low)).fold(0.0f64, f64::min);
        let hi = pts
            .iter()
            .map(|p| fin(p.rel_ci_high))
            .fold(0.0f64, f64::max);
        let span = (hi - lo).max(1e-6);
        let n = pts.len().max(2) as f64 - 1.0;
        let x = |i: usize| pad + i as f64 / n * (w - 2.0 * pad);
        let y = |v: f64| 20.0 + (hi - fin(v)) / span * (h - 45.0);
        let band: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.rel_ci_high)))
            .chain(
                pts.iter()
                    .enumerate()
                    .rev()
                    .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.rel_ci_low))),
            )
            .collect();
        let line: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.rel_effect)))
            .collect();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"10\">\
<text x=\"{pad}\" y=\"12\" font-size=\"11\">{} · {}</text>\
<polygon points=\"{}\" fill=\"#54aeff\" fill-opacity=\"0.3\"/>\
<polyline points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\"/>\
<line x1=\"{pad}\" y1=\"{z:.1}\" x2=\"{:.1}\" y2=\"{z:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\
<text x=\"2\" y=\"{:.1}\">{}</text><text x=\"2\" y=\"{:.1}\">{}</text>\
<text x=\"{pad}\" y=\"{:.1}\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></svg>",
            esc(metric),
            esc(&arm_label(variant, control, &r.control)),
            band.join(" "),
            line.join(" "),
            w - pad,
            y(hi) + 4.0,
            pct(hi),
            y(lo),
            pct(lo),
            h - 6.0,
            pts.first().map_or("", |p| p.date.as_str()),
            w - pad,
            h - 6.0,
            pts.last().map_or("", |p| p.date.as_str()),
            z = y(0.0),
        );
    }
    out
}

/// A metric table in HTML, the verdict cell coloured by direction.
fn html_table(rows: &[MetricRow], report_control: &str, ci_head: &str) -> String {
    let mut out = String::from("<table><tr>");
    for h in HEADS {
        let _ = write!(out, "<th>{}</th>", esc(&h.replace("[CI]", ci_head)));
    }
    out.push_str("</tr>\n");
    for m in rows {
        let class = if m.improved() {
            " class=\"ok\""
        } else if m.regressed() || m.guardrail() == Some(Guardrail::Fails) {
            " class=\"bad\""
        } else if m.skewed {
            " class=\"warn\""
        } else {
            ""
        };
        out.push_str("<tr>");
        for (i, c) in cells(m, report_control).iter().enumerate() {
            let class = if i == HEADS.len() - 1 { class } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>");
    out
}

/// The decision block in HTML.
fn html_decisions(r: &Report) -> String {
    let mut out = String::new();
    for d in &r.decisions {
        let class = match d.verdict {
            Verdict::Ship => "ship",
            Verdict::DontShip => "stop",
            Verdict::KeepRunning | Verdict::NoGoal => "wait",
        };
        let _ = write!(
            out,
            "<div class=\"decision {class}\"><b>{}: {}</b><ul>",
            esc(&arm_label(&d.variant, &d.control, "")),
            esc(&d.verdict.to_string())
        );
        for reason in &d.reasons {
            let _ = write!(out, "<li>{}</li>", esc(reason));
        }
        out.push_str("</ul></div>");
    }
    if !out.is_empty() {
        out.insert_str(0, "<h2>Decision</h2>");
    }
    out
}

/// A self-contained HTML report: SRM status, forest plot, metric table.
pub fn html(r: &Report) -> String {
    html_with_truth(r, &[])
}

/// [`html`] with true lifts marked on the forest plot.
pub fn html_with_truth(r: &Report, truth: &[TrueLift]) -> String {
    let conf = (100.0 * (1.0 - r.alpha)).round();
    let ci = format!("[{conf}% CI]");
    let srm = if r.srm.ok {
        format!(
            "<p class=\"ok\">SRM check passed (χ² = {:.3}, p = {:.4}).</p>",
            r.srm.chi2, r.srm.p_value
        )
    } else {
        format!(
            "<p class=\"bad\">Sample-ratio mismatch (χ² = {:.3}, p = {:.2e}): the split is not what was configured; do not trust these results.</p>",
            r.srm.chi2, r.srm.p_value
        )
    };
    let daily = if r.daily.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Cumulative lift by day (relative, with {conf}% intervals)</h2><div>{}</div>",
            daily_svg(r)
        )
    };
    let skew: String = skew_notes(r)
        .iter()
        .map(|n| format!("<p class=\"warnbox\">⚠ {}</p>", esc(&n.replace('`', ""))))
        .collect();
    let segments: String = r
        .segments
        .iter()
        .map(|seg| {
            format!(
                "<h2>Segment {}</h2>{}",
                esc(&seg.segment),
                html_table(&seg.metrics, &r.control, &ci)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;font-size:13px}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2),td:last-child{{text-align:left}}\
.ok{{color:#1a7f37}}.bad{{color:#cf222e;font-weight:bold}}.warn{{color:#9a6700}}\
.decision{{border-left:6px solid;padding:4px 12px;margin:8px 0}}.decision ul{{margin:4px 0}}\
.ship{{border-color:#1a7f37;background:#dafbe1}}.stop{{border-color:#cf222e;background:#ffebe9}}\
.wait{{border-color:#9a6700;background:#fff8c5}}.warnbox{{background:#fff8c5;padding:6px 10px}}\
.legend{{color:#57606a;font-size:13px}}</style></head><body>\
<h1>Experiment {title}</h1><p>Control <b>{control}</b>, α = {alpha}, correction {corr}{seq}.</p>{decisions}{notes}{srm}\
<h2>Relative change with {conf}% intervals</h2>{svg}{daily}<h2>Metrics</h2>{table}<p class=\"legend\">{legend}</p>{skew}{segments}</body></html>\n",
        title = esc(&r.experiment),
        control = esc(&r.control),
        alpha = r.alpha,
        corr = r.correction,
        seq = if r.sequential.is_some() { ", sequential (always-valid) intervals" } else { "" },
        decisions = html_decisions(r),
        notes = r
            .notes
            .iter()
            .map(|n| format!("<p class=\"note\">{}</p>", esc(n)))
            .collect::<String>(),
        svg = forest_svg_with_truth(r, truth),
        table = html_table(&r.metrics, &r.control, &ci),
        legend = esc(&LEGEND.replace('`', "")),
    )
}

/// Writes `report.json`, `report.md` and `report.html` into `dir` (created if
/// needed), all or nothing.
pub fn write_report(dir: &Path, r: &Report) -> Result<()> {
    write_report_with_truth(dir, r, &[])
}

/// A report as pretty JSON.
pub(crate) fn json_text<T: serde::Serialize>(r: &T) -> Result<String> {
    serde_json::to_string_pretty(r).map_err(|e| Error::Invalid {
        what: "report".into(),
        reason: e.to_string(),
    })
}

/// Writes `(file name, contents)` into `dir` (created if needed), all or nothing.
pub(crate) fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut set = FileSet::new();
    for (name, text) in files {
        set.write_bytes(&dir.join(name), text.as_bytes())?;
    }
    set.commit()?;
    Ok(())
}

/// [`write_report`] with true lifts marked in the HTML report, and the forest
/// plot also written alone as `forest.svg`.
pub fn write_report_with_truth(dir: &Path, r: &Report, truth: &[TrueLift]) -> Result<()> {
    let forest = (!truth.is_empty()).then(|| forest_svg_with_truth(r, truth));
    let mut files = vec![
        ("report.html", html_with_truth(r, truth)),
        ("report.json", json_text(r)?),
        ("report.md", markdown(r)),
    ];
    if let Some(f) = forest {
        files.push(("forest.svg", f));
    }
    write_files(dir, &files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Srm;
    use crate::stats::Correction;

    #[test]
    fn interval_level_follows_alpha() {
        let r = Report {
            experiment: "e".into(),
            control: "control".into(),
            alpha: 0.1,
            correction: Correction::None,
            sequential: None,
            srm: Srm {
                counts: Default::default(),
                expected: Default::default(),
                chi2: 0.0,
                p_value: 1.0,
                ok: true,
            },
            metrics: Vec::new(),
            daily: Vec::new(),
            segments: Vec::new(),
            notes: Vec::new(),
            decisions: Vec::new(),
        };
        assert!(markdown(&r).contains("90% CI"));
        assert!(html(&r).contains("90% intervals"));
    }

    #[test]
    fn forest_axis_is_in_percent_and_never_draws_nan() -> Result<()> {
        use crate::analysis::{analyze_sums, AnalysisConfig};
        use crate::pipeline::ArmSums;
        use crate::stats::Sums;
        let metrics: Vec<crate::Metric> = crate::builtin_metrics()
            .into_iter()
            .filter(|m| ["watch_time_per_user", "skip_rate"].contains(&m.name.as_str()))
            .map(|m| crate::Metric { cuped: false, ..m })
            .collect();
        let arm = |v: &str, mu: f64, var: f64| ArmSums {
            variant: v.into(),
            sums: vec![
                Sums {
                    n: 1000.0,
                    x: mu * 1000.0,
                    x2: 1000.0 * mu * mu + 999.0 * var,
                    ..Sums::default()
                },
                // skip_rate: a ratio with zero variance → uninformative.
                Sums {
                    n: 1000.0,
                    x: 100.0,
                    x2: 10.0,
                    y: 1000.0,
                    y2: 1000.0,
                    xy: 100.0,
                    ..Sums::default()
                },
            ],
            quantiles: vec![None, None],
        };
        let r = analyze_sums(
            &[arm("control", 100.0, 400.0), arm("treatment", 103.0, 400.0)],
            &metrics,
            &AnalysisConfig::default(),
        )?;
        let svg = forest_svg(&r);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Ticks labelled in percent, including zero, and the guardrail's 2%
        // tolerance drawn for skip_rate.
        assert!(svg.contains(">0%<") && svg.contains("%</text>"), "{svg}");
        assert!(
            svg.contains("tolerance: skip_rate may not rise more than +2.00%"),
            "{svg}"
        );
        assert!(svg.contains(">Goal<") && svg.contains(">Guardrails<"));
        assert_eq!(ticks(-0.05, 0.12).0.len(), 7, "{:?}", ticks(-0.05, 0.12));
        assert_eq!(tick_label(0.025, 0.025), "+2.5%");
        assert_eq!(tick_label(-0.1, 0.05), "-10%");

        // Arm names from a user's file are text in report.md, never markup,
        // and cannot split a table row.
        let evil = "<script>alert(1)</script>|x";
        let r = analyze_sums(
            &[arm("control", 100.0, 400.0), arm(evil, 103.0, 400.0)],
            &metrics,
            &AnalysisConfig::default(),
        )?;
        let md = markdown(&r);
        assert!(!md.contains("<script>"), "{md}");
        assert!(
            md.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\|x"),
            "{md}"
        );
        assert!(!html(&r).contains("<script>"));
        Ok(())
    }
}
