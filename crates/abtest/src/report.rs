//! Writing reports: `report.json` (the contract) and `report.md`, atomically.

use std::fmt::Write as _;
use std::path::Path;

use reelkit_logs::FileSet;

use crate::analysis::Report;
use crate::error::{Error, Result};

fn pct(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
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
        "| metric | variant | control | variant | lift | 95% CI (relative) | p | p adj. | CUPED | |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for m in &r.metrics {
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} | {:.4} | {} | [{}, {}] | {:.4} | {:.4} | {} | {} |",
            m.metric,
            m.variant,
            m.control_mean,
            m.variant_mean,
            pct(m.rel_effect),
            pct(m.rel_ci_low),
            pct(m.rel_ci_high),
            m.p_value,
            m.p_value_adjusted,
            if m.cuped { "yes" } else { "no" },
            match (&m.message, m.significant) {
                (Some(msg), _) => msg.clone(),
                (None, true) => "significant".into(),
                (None, false) => String::new(),
            }
        );
    }
    s
}

/// Writes `report.json` and `report.md` into `dir` (created if needed), all or
/// nothing.
pub fn write_report(dir: &Path, r: &Report) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(r).map_err(|e| Error::Invalid {
        what: "report".into(),
        reason: e.to_string(),
    })?;
    let md = markdown(r);
    let mut set = FileSet::new();
    set.write(&dir.join("report.json"), |w| {
        std::io::Write::write_all(w, &json)
    })?;
    set.write(&dir.join("report.md"), |w| {
        std::io::Write::write_all(w, md.as_bytes())
    })?;
    set.commit()?;
    Ok(())
}
