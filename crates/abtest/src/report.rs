//! Writing reports: `report.json` (the contract) and `report.md`, atomically.

use std::fmt::Write as _;
use std::path::Path;

use reelkit_logs::FileSet;

use crate::analysis::{MetricRow, Report};
use crate::error::{Error, Result};

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// How a comparison is named: the variant alone when it is compared with the
/// report's control, `variant vs baseline` otherwise.
fn arm_label(variant: &str, control: &str, report_control: &str) -> String {
    if control.is_empty() || control == report_control {
        variant.to_string()
    } else {
        format!("{variant} vs {control}")
    }
}

/// The table cells of one row: metric, variant, control and variant means,
/// relative lift, its interval, p, adjusted p, CUPED, and a verdict.
fn cells(m: &MetricRow, report_control: &str) -> [String; 11] {
    [
        m.metric.clone(),
        arm_label(&m.variant, &m.control, report_control),
        format!("{:.4}", m.test.control_mean),
        format!("{:.4}", m.test.variant_mean),
        pct(m.test.rel_effect),
        format!("[{}, {}]", pct(m.test.rel_ci_low), pct(m.test.rel_ci_high)),
        format!("{:.4}", m.test.p_value),
        format!("{:.4}", m.p_value_adjusted),
        format!("{:.1}%", 100.0 * m.bayesian.chance_to_win),
        if m.cuped { "yes" } else { "no" }.to_string(),
        match (&m.test.message, m.improved(), m.regressed()) {
            (Some(msg), _, _) => msg.clone(),
            (None, true, _) => "significant improvement".into(),
            (None, _, true) if m.higher_is_better => "significant regression".into(),
            (None, _, true) => "significant regression (lower is better)".into(),
            (None, _, _) => String::new(),
        },
    ]
}

/// The Markdown rendering of a report.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Experiment `{}`\n", r.experiment);
    let _ = writeln!(
        s,
        "Control `{}`, α = {}, correction: {}.\n",
        r.control, r.alpha, r.correction
    );
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
    let _ = writeln!(
        s,
        "| metric | variant | control | variant | lift | {}% CI (relative) | p | p adj. | chance to win | CUPED | |\n|---|---|---|---|---|---|---|---|---|---|---|",
        (100.0 * (1.0 - r.alpha)).round()
    );
    for m in &r.metrics {
        let _ = writeln!(s, "| {} |", cells(m, &r.control).join(" | "));
    }
    for seg in &r.segments {
        let _ = writeln!(s, "\n## Segment `{}`\n", seg.segment);
        let _ = writeln!(
            s,
            "| metric | variant | control | variant | lift | CI (relative) | p | p adj. | chance to win | CUPED | |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for m in &seg.metrics {
            let _ = writeln!(s, "| {} |", cells(m, &r.control).join(" | "));
        }
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
    pub metric: String,
    pub variant: String,
    /// The baseline of the comparison (the report's control for arm-vs-control rows).
    pub control: String,
    pub rel_effect: f64,
}

/// The forest plot with each row's true lift marked by a black diamond.
pub fn forest_svg_with_truth(r: &Report, truth: &[TrueLift]) -> String {
    let rows = &r.metrics;
    let truth_of = |m: &MetricRow| {
        truth
            .iter()
            .find(|t| t.metric == m.metric && t.variant == m.variant && t.control == m.control)
            .map(|t| t.rel_effect)
    };
    let (w, row_h, left, right) = (760.0, 26.0, 260.0, 40.0);
    let h = 40.0 + row_h * rows.len() as f64;
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let lo = rows
        .iter()
        .map(|m| finite(m.test.rel_ci_low).min(truth_of(m).map_or(0.0, finite)))
        .fold(0.0f64, f64::min);
    let hi = rows
        .iter()
        .map(|m| finite(m.test.rel_ci_high).max(truth_of(m).map_or(0.0, finite)))
        .fold(0.0f64, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |v: f64| left + (finite(v) - lo) / (hi - lo) * (w - left - right);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let zero = x(0.0);
    s.push_str(&format!(
        "<line x1=\"{zero:.1}\" y1=\"20\" x2=\"{zero:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
        h - 10.0
    ));
    s.push_str(&format!(
        "<text x=\"{zero:.1}\" y=\"14\" text-anchor=\"middle\">0%</text>"
    ));
    for (k, m) in rows.iter().enumerate() {
        let y = 30.0 + row_h * k as f64 + row_h / 2.0;
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
    if !truth.is_empty() {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">◇ true lift (simulation ground truth)</text>",
            w - right,
            h - 2.0
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

/// One table per segment (empty without segments).
fn segments_html(r: &Report) -> String {
    let mut out = String::new();
    for seg in &r.segments {
        let _ = writeln!(
            out,
            "<h2>Segment {}</h2><table><tr><th>metric</th><th>variant</th><th>control</th><th>variant</th>\
<th>lift</th><th>interval</th><th>p</th><th>p adj.</th><th>chance to win</th><th>CUPED</th><th></th></tr>",
            esc(&seg.segment)
        );
        for m in &seg.metrics {
            out.push_str("<tr>");
            for c in cells(m, &r.control) {
                let _ = write!(out, "<td>{}</td>", esc(&c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>");
    }
    out
}

/// A self-contained HTML report: SRM status, forest plot, metric table.
pub fn html(r: &Report) -> String {
    html_with_truth(r, &[])
}

/// [`html`] with true lifts marked on the forest plot.
pub fn html_with_truth(r: &Report, truth: &[TrueLift]) -> String {
    let mut rows = String::new();
    for m in &r.metrics {
        rows.push_str("<tr>");
        let verdict = if m.improved() {
            " class=\"ok\""
        } else if m.regressed() {
            " class=\"bad\""
        } else {
            ""
        };
        for (i, c) in cells(m, &r.control).iter().enumerate() {
            let class = if i == 10 { verdict } else { "" };
            rows.push_str(&format!("<td{class}>{}</td>", esc(c)));
        }
        rows.push_str("</tr>\n");
    }
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
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}\
.ok{{color:#1a7f37}}.bad{{color:#cf222e;font-weight:bold}}</style></head><body>\
<h1>Experiment {title}</h1><p>Control <b>{control}</b>, α = {alpha}, correction {corr}{seq}.</p>{notes}{srm}\
<h2>Relative lift with {conf}% intervals</h2>{svg}<h2>Metrics</h2><table><tr><th>metric</th><th>variant</th>\
<th>control</th><th>variant</th><th>lift</th><th>interval</th><th>p</th><th>p adj.</th><th>chance to win</th><th>CUPED</th><th></th></tr>\n{rows}</table></body></html>\n",
        title = esc(&r.experiment),
        control = esc(&r.control),
        alpha = r.alpha,
        corr = r.correction,
        seq = if r.sequential.is_some() { ", sequential (always-valid) intervals" } else { "" },
        notes = r
            .notes
            .iter()
            .map(|n| format!("<p class=\"note\">{}</p>", esc(n)))
            .collect::<String>(),
        conf = (100.0 * (1.0 - r.alpha)).round(),
        svg = forest_svg_with_truth(r, truth),
    )
    .replace("</table></body>", &format!("</table>{}</body>", segments_html(r)))
    .replace(
        "<h2>Metrics</h2>",
        &if r.daily.is_empty() {
            "<h2>Metrics</h2>".to_string()
        } else {
            format!(
                "<h2>Cumulative lift by day (relative, with {}% intervals)</h2><div>{}</div><h2>Metrics</h2>",
                (100.0 * (1.0 - r.alpha)).round(),
                daily_svg(r)
            )
        },
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
        };
        assert!(markdown(&r).contains("90% CI"));
        assert!(html(&r).contains("90% intervals"));
    }
}
