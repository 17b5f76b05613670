//! The analysis whose assignment comes from a served exposure log
//! (`reelkit ab analyze --exposures`), on the committed sample's events.

mod common;

use std::path::Path;

use reelkit_abtest::{
    analyze_report, builtin_metrics, exposure::analyze_by_exposure, AnalysisConfig, Correction,
    Extras, Inputs,
};
use reelkit_logs::polars::prelude::*;
use reelkit_logs::Assignments;

use common::{sample, users};

/// An A/B exposure log: one response per `(user, arm, ts)`, in one file.
fn write_log(
    dir: &Path,
    name: &str,
    rows: &[(u64, &str, i64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = rows.len();
    let videos: Vec<Series> = (0..n)
        .map(|i| Series::new("".into(), &[i as u64, i as u64 + 1]))
        .collect();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new(
                "user_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<u64>>(),
            ),
            Column::new(
                "ts_ms".into(),
                rows.iter().map(|r| r.2).collect::<Vec<i64>>(),
            ),
            Column::new("request_id".into(), (0..n as u64).collect::<Vec<u64>>()),
            Column::new("experiment".into(), vec!["ab"; n]),
            Column::new(
                "variant".into(),
                rows.iter().map(|r| r.1).collect::<Vec<&str>>(),
            ),
            Column::new("model_versions".into(), vec!["a=1,b=1"; n]),
            Series::new("video_ids".into(), videos).into(),
            Series::full_null(
                "teams".into(),
                n,
                &DataType::List(Box::new(DataType::String)),
            )
            .into(),
        ],
    )?;
    reelkit_logs::write_frame(&dir.join(name), &mut df)?;
    Ok(())
}

fn cfg() -> AnalysisConfig {
    AnalysisConfig {
        experiment: "exposures".into(),
        control: Some("a".into()),
        alpha: 0.05,
        correction: Correction::Holm,
        weights: None,
        sequential: None,
        comparisons: Vec::new(),
    }
}

#[test]
fn an_exposure_log_implies_the_assignment_and_triggers_on_first_exposure(
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("exposures");
    std::fs::create_dir(&log)?;
    // 300 of the sample's users exposed, by parity into `a` or `b`, at the
    // middle of the sample's time range; each user twice (the first counts).
    let events = reelkit_logs::read_events(&sample())?;
    let (lo, hi) = (
        *events.ts_ms.iter().min().ok_or("no events")?,
        *events.ts_ms.iter().max().ok_or("no events")?,
    );
    let mid = lo + (hi - lo) / 2;
    let exposed: Vec<u64> = users().into_iter().take(300).collect();
    let arm = |i: usize| if i.is_multiple_of(2) { "a" } else { "b" };
    let rows: Vec<(u64, &str, i64)> = exposed
        .iter()
        .enumerate()
        .flat_map(|(i, &u)| [(u, arm(i), mid + 1_000), (u, arm(i), mid)])
        .collect();
    write_log(&log, "0001.parquet", &rows)?;
    // An unfinished file is left out.
    std::fs::write(log.join("0002.parquet.partial"), b"PAR1 half a file")?;

    let metrics = builtin_metrics();
    let extras = Extras::default();
    let report = analyze_by_exposure(&sample(), &log, false, None, &metrics, &cfg(), extras)?;
    // The same report as the explicit assignment of those users.
    let explicit = Assignments {
        user_id: exposed.clone(),
        variant: (0..exposed.len()).map(|i| arm(i).to_string()).collect(),
    };
    let direct = analyze_report(&Inputs::new(sample(), &explicit, &metrics), &cfg(), extras)?;
    assert_eq!(
        serde_json::to_value(&report.metrics)?,
        serde_json::to_value(&direct.metrics)?
    );
    assert!(
        report.notes[0].contains("300 users exposed"),
        "{:?}",
        report.notes
    );
    assert!(
        report.notes[1].starts_with("Not triggered"),
        "{:?}",
        report.notes
    );

    // Triggered: only events from each user's first exposure (`mid`) on.
    let triggered = analyze_by_exposure(&sample(), &log, true, None, &metrics, &cfg(), extras)?;
    assert!(triggered.notes[1].starts_with("Triggered analysis"));
    let kept: usize = events
        .user_id
        .iter()
        .zip(&events.ts_ms)
        .filter(|(u, &t)| exposed.contains(u) && t >= mid)
        .count();
    let all: usize = events
        .user_id
        .iter()
        .filter(|u| exposed.contains(u))
        .count();
    assert!(kept > 0 && kept < all);
    assert!(
        triggered.notes[1].contains(&format!("({kept} of the exposed users' {all} events")),
        "{} vs {kept} of {all}",
        triggered.notes[1]
    );
    assert_ne!(
        serde_json::to_value(&triggered.metrics)?,
        serde_json::to_value(&report.metrics)?
    );

    // A user served by two arms is refused, naming the user.
    let u = exposed[0];
    write_log(&log, "0003.parquet", &[(u, "b", mid + 5_000)])?;
    let err = analyze_by_exposure(&sample(), &log, false, None, &metrics, &cfg(), extras)
        .expect_err("a user in two arms");
    assert!(
        err.to_string()
            .contains(&format!("user {u} was served by `a` and by `b`")),
        "{err}"
    );
    Ok(())
}
