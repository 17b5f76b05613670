//! `reelkit ope`: a candidate replayed on a log it wrote itself agrees with
//! every impression and estimates no lift; bad logs, candidates and flags
//! are refused by name with nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reelkit_logs::polars::prelude::DataType;
use reelkit_logs::{Event, Events, Surface};
use reelkit_ranker::{Ranker, Request, Retrieval};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/sample")
        .join(name)
}

fn reelkit(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reelkit"))
        .args(args)
        .output()
        .expect("the reelkit binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn train(dir: &Path) -> TestResult<PathBuf> {
    let model = dir.join("m.arrow");
    let o = reelkit(&[
        &"train",
        &"--events",
        &sample("events.parquet"),
        &"--factors",
        &"8",
        &"--epochs",
        &"3",
        &"--out",
        &model,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    Ok(model)
}

/// The sample catalogue as the ranker takes it (video ids, creator ids,
/// long or not), and the last upload time.
struct Catalogue(Vec<u64>, Vec<u64>, Vec<bool>, i64);

fn catalogue() -> TestResult<Catalogue> {
    let df = reelkit_logs::read_frame(&sample("videos.parquet"))?;
    let u64s = |name: &str| -> TestResult<Vec<u64>> {
        let c = df.column(name)?.cast(&DataType::UInt64)?;
        Ok(c.u64()?.into_no_null_iter().collect())
    };
    let long: Vec<bool> = df
        .column("format")?
        .str()?
        .iter()
        .map(|f| f == Some("long"))
        .collect();
    let up = df.column("upload_ts_ms")?.cast(&DataType::Int64)?;
    let last = up.i64()?.into_no_null_iter().max().unwrap_or(0);
    Ok(Catalogue(
        u64s("video_id")?,
        u64s("creator_id")?,
        long,
        last,
    ))
}

/// A log the candidate wrote itself: for 40 of its users, four sessions of
/// two pages of 8 (the second page cut after 5 impressions), each page the
/// candidate's own top 8 on the session's surface outside what the user
/// saw before, every impression with probability `propensity`.
fn own_log(model: &Path, propensity: f64) -> TestResult<Events> {
    let Catalogue(ids, creators, long, last_upload) = catalogue()?;
    let ranker = Ranker::open(model)?
        .with_retrieval(Retrieval::Exact)
        .with_catalog(&ids, &creators, &long)?;
    let users: Vec<u64> = ranker
        .model()
        .users
        .ids()
        .iter()
        .take(40)
        .copied()
        .collect();
    let mut ev = Events::with_capacity(40 * 52);
    for (n, &user) in users.iter().enumerate() {
        let mut seen: Vec<u64> = Vec::new();
        let mut ts = last_upload + 86_400_000 + n as i64;
        for session in 0..4u64 {
            // Sessions 0 and 2 on one surface, 1 and 3 on another: a replay
            // that answers later pages from an earlier, longer list must
            // still agree.
            let surface =
                [Surface::Reels, Surface::Feed, Surface::Watch][(n + session as usize % 2) % 3];
            for page in 0..2u32 {
                let req = Request {
                    exclude: seen.clone(),
                    surface: Some(surface),
                    ..Request::default()
                };
                let list = ranker.recommend(user, 8, &req).items;
                let shown = if page == 0 { 8 } else { 5 };
                for (slot, r) in list.iter().take(shown).enumerate() {
                    ev.push(&Event {
                        user_id: user,
                        session_id: user * 10 + session,
                        ts_ms: ts,
                        video_id: r.item_id,
                        creator_id: 1,
                        surface,
                        position: page * 8 + slot as u32,
                        duration_ms: 10_000,
                        watch_ms: 1_000 + (r.item_id % 9_000) as u32,
                        liked: r.item_id % 3 == 0,
                        shared: false,
                        commented: false,
                        followed: false,
                    });
                    ev.set_last_propensity(propensity);
                    ts += 5_000;
                }
                seen.extend(list.iter().take(shown).map(|r| r.item_id));
            }
            ts += 3_600_000;
        }
    }
    Ok(ev)
}

fn ope(events: &Path, model: &Path, out: &Path, extra: &[&str]) -> Output {
    ope_in(events, model, &sample("videos.parquet"), out, extra)
}

fn ope_with(events: &Path, model: &Path, videos: &Path, out: &Path) -> Output {
    ope_in(events, model, videos, out, &[])
}

fn ope_in(events: &Path, model: &Path, videos: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"ope",
        &"--events",
        &events,
        &"--model",
        &model,
        &"--videos",
        &videos,
    ];
    args.push(&"--out");
    args.push(&out);
    args.push(&"--bootstrap");
    args.push(&"50");
    for e in extra {
        args.push(e);
    }
    reelkit(&args)
}

#[test]
fn a_candidate_replayed_on_its_own_log_agrees_everywhere_and_lifts_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let model = train(dir.path())?;
    let log = dir.path().join("log.parquet");
    reelkit_logs::write_events(&log, &own_log(&model, 1.0)?)?;
    let out = dir.path().join("report");
    let o = ope(&log, &model, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    // Every rebuilt request is the one the log was written from: the same
    // pages (8 per user), the same videos at the same slots.
    assert_eq!(r["pages"], 320);
    assert_eq!(r["agreement"], 1.0);
    for m in r["metrics"].as_array().expect("metrics") {
        for e in m["estimates"].as_array().expect("estimates") {
            let lift = e["lift"].as_f64().expect("a lift");
            if e["estimator"] != "dm" {
                assert!(lift.abs() < 1e-9, "{}: {e}", m["metric"]);
            }
        }
        assert_eq!(m["diagnostics"]["mean_weight"], 1.0, "{m}");
    }
    // The same report whatever the thread count.
    let one = dir.path().join("one-thread");
    let o = ope(&log, &model, &one, &["--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(one.join("report.json"))?,
        std::fs::read_to_string(out.join("report.json"))?
    );
    let md = std::fs::read_to_string(out.join("report.md"))?;
    assert!(md.contains("| IPS |") && md.contains("## watch_ms"), "{md}");
    let html = std::fs::read_to_string(out.join("report.html"))?;
    assert!(html.contains("<svg") && html.contains("SNIPS"), "{html}");

    // A log the candidate did not write: one page's videos moved a slot
    // on. The replay no longer agrees there, and IPS sees the difference.
    let mut ev = own_log(&model, 1.0)?;
    ev.video_id[..8].rotate_left(1);
    reelkit_logs::write_events(&log, &ev)?;
    let o = ope(&log, &model, &out, &["--estimator", "ips"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let agreement = r["agreement"].as_f64().expect("agreement");
    assert!(
        (agreement - (1.0 - 8.0 / 2080.0)).abs() < 1e-12,
        "{agreement}"
    );
    let lift = r["metrics"][0]["estimates"][0]["lift"]
        .as_f64()
        .expect("lift");
    assert!(lift < 0.0, "{lift}");
    Ok(())
}

/// Asserts a refusal naming each needle, without a panic, and nothing in
/// the output directory.
fn refused(o: &Output, out: &Path, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not named: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} written");
}

#[test]
fn bad_logs_candidates_and_flags_are_refused_by_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let model = train(dir.path())?;
    let out = dir.path().join("out");
    // A log without propensities.
    let o = ope(&sample("events.parquet"), &model, &out, &[]);
    refused(&o, &out, &["propensity", "--explore"]);
    // One impression's propensity missing.
    let mut ev = own_log(&model, 0.5)?;
    if let Some(p) = ev.propensity.as_mut() {
        p[17] = f64::NAN;
    }
    let log = dir.path().join("holes.parquet");
    reelkit_logs::write_events(&log, &ev)?;
    refused(&ope(&log, &model, &out, &[]), &out, &["null", "row 17"]);
    // A propensity of 0.
    let csv = dir.path().join("zero.csv");
    let mut ev = own_log(&model, 0.5)?;
    if let Some(p) = ev.propensity.as_mut() {
        p[3] = 0.0;
    }
    reelkit_logs::write_events(&csv, &ev)?;
    refused(&ope(&csv, &model, &out, &[]), &out, &["propensity"]);
    // A candidate that knows none of the log's videos.
    let good = dir.path().join("log.parquet");
    reelkit_logs::write_events(&good, &own_log(&model, 0.5)?)?;
    let ints = dir.path().join("ints.csv");
    let mut text = String::from("user_id,item_id\n");
    for u in 0..30 {
        for i in 0..5 {
            text.push_str(&format!("{u},{}\n", (u + i) % 12));
        }
    }
    std::fs::write(&ints, text)?;
    let other = dir.path().join("other.arrow");
    let o = reelkit(&[
        &"train",
        &"--interactions",
        &ints,
        &"--factors",
        &"4",
        &"--out",
        &other,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = reelkit(&[
        &"ope",
        &"--events",
        &good,
        &"--model",
        &other,
        &"--out",
        &out,
    ]);
    refused(&o, &out, &["knows none", "videos"]);
    // A catalogue without its creators.
    let videos = dir.path().join("videos.csv");
    std::fs::write(&videos, "video_id,format\n1,short\n")?;
    let o = ope_with(&good, &model, &videos, &out);
    refused(&o, &out, &["videos.csv", "creator_id"]);
    // Flags.
    for (flags, needle) in [
        (&["--metric", "watch_time"][..], "watch_time"),
        (&["--estimator", "ipw"][..], "ipw"),
        (&["--page-size", "0"][..], "--page-size"),
        (&["--level", "1.5"][..], "level"),
    ] {
        refused(&ope(&good, &model, &out, flags), &out, &[needle]);
    }
    // The output is an input.
    let o = ope(&good, &model, &good, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert!(
        reelkit_logs::read_events(&good).is_ok(),
        "the log is intact"
    );
    Ok(())
}

/// The simulator's `ranker` policy answers each page as the service does,
/// so a model replayed on the log it wrote while exploring agrees with
/// every impression the exploration left alone: about 1 − ε of them.
#[test]
fn a_model_replayed_on_its_simulated_exploring_log_agrees_where_it_did_not_explore() -> TestResult {
    let dir = tempfile::tempdir()?;
    let world = "--users 300 --videos 1500 --seed 9";
    let pre = dir.path().join("pre");
    let line = |extra: &str, out: &Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = format!("simulate {world} {extra} --out")
            .split_whitespace()
            .map(Into::into)
            .collect();
        v.push(out.into());
        v
    };
    let o = Command::new(env!("CARGO_BIN_EXE_reelkit"))
        .args(line("--days 3", &pre))
        .output()?;
    assert!(o.status.success(), "{}", stderr(&o));
    let model = dir.path().join("m.arrow");
    let o = reelkit(&[
        &"train",
        &"--events",
        &pre.join("events.parquet"),
        &"--factors",
        &"8",
        &"--out",
        &model,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = dir.path().join("log");
    let extra = format!(
        "--days 1 --policy ranker --model {} --fresh 0 --explore 0.2",
        model.display()
    );
    let o = Command::new(env!("CARGO_BIN_EXE_reelkit"))
        .args(line(&extra, &log))
        .output()?;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("ope");
    let o = ope_with(
        &log.join("events.parquet"),
        &model,
        &log.join("videos.parquet"),
        &out,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let agreement = r["agreement"].as_f64().expect("agreement");
    assert!((0.75..0.85).contains(&agreement), "{agreement}");
    impressions_hold_the_estimates(&log.join("events.parquet"), &model, &log, dir.path())?;
    // With fresh uploads inserted among the model's videos, the pages no
    // longer line up: the flag matters.
    let o = reelkit(&[
        &"simulate",
        &"--fresh",
        &"1",
        &"--out",
        &dir.path().join("x"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--fresh"),
        "{}",
        stderr(&o)
    );
    Ok(())
}

/// `--impressions` writes the rows every estimate sums over: their sums
/// are the report's IPS, SNIPS and DR, a row's weight is its candidate
/// probability over its propensity, and the candidate's video is the
/// logged one exactly where that probability is 1.
fn impressions_hold_the_estimates(
    events: &Path,
    model: &Path,
    log: &Path,
    dir: &Path,
) -> TestResult {
    let out = dir.join("ope-rows");
    let o = ope_in(
        events,
        model,
        &log.join("videos.parquet"),
        &out,
        &["--impressions", "--metric", "watch_ms"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    let df = reelkit_logs::read_frame(&out.join("impressions.parquet"))?;
    let ev = reelkit_logs::read_events(events)?;
    assert_eq!(df.height(), ev.len());
    let col = |name: &str| -> TestResult<Vec<f64>> {
        Ok(df.column(name)?.f64()?.into_no_null_iter().collect())
    };
    let (w, t, p) = (col("weight")?, col("target")?, col("propensity")?);
    let (reward, ql, qc) = (
        col("watch_ms")?,
        col("watch_ms_q_logged")?,
        col("watch_ms_q_candidate")?,
    );
    let logged: Vec<Option<u64>> = df.column("video_id")?.u64()?.iter().collect();
    let chosen: Vec<Option<u64>> = df.column("candidate_video_id")?.u64()?.iter().collect();
    for i in 0..df.height() {
        assert!((w[i] - t[i] / p[i]).abs() < 1e-12, "row {i}");
        assert_eq!(t[i] == 1.0, chosen[i] == logged[i], "row {i}");
        assert_eq!(reward[i], ev.watch_ms[i] as f64, "row {i}");
    }
    assert!(p.iter().any(|&x| x < 1.0), "an exploring log");
    let users = r["metrics"][0]["diagnostics"]["users"]
        .as_f64()
        .expect("users");
    let sum = |f: &dyn Fn(usize) -> f64| (0..df.height()).map(f).sum::<f64>();
    let ips = sum(&|i| w[i] * reward[i]) / users;
    let snips = sum(&|i| w[i] * reward[i]) / sum(&|i| w[i]) * df.height() as f64 / users;
    let dr = sum(&|i| qc[i] + w[i] * (reward[i] - ql[i])) / users;
    for e in r["metrics"][0]["estimates"].as_array().expect("estimates") {
        let want = match e["estimator"].as_str() {
            Some("ips") => ips,
            Some("snips") => snips,
            Some("dr") => dr,
            _ => continue,
        };
        let got = e["value"].as_f64().expect("value");
        assert!((got - want).abs() <= 1e-9 * want.abs(), "{e}: {want}");
    }
    Ok(())
}

/// A small study spec: the shipped example's arms on a small world.
fn study_spec(dir: &Path, retrain: &str) -> TestResult<PathBuf> {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/experiments/ope.toml"),
    )?;
    let small = shipped
        .replace("scale = \"small\"", "")
        .replace(
            "[world]\n",
            "[world]\nusers = 300\nvideos = 1500\ncreators = 150\nnew_videos_per_day = 20\n",
        )
        .replace("days = 7", "days = 3")
        .replace("factors = 32", "factors = 8")
        .replace("retrain = \"never\"", &format!("retrain = \"{retrain}\""));
    let path = dir.join(format!("ope-{retrain}.toml"));
    std::fs::write(&path, small)?;
    Ok(path)
}

#[test]
fn an_ope_study_writes_its_table_and_refuses_a_retrained_candidate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("study");
    let spec = study_spec(dir.path(), "never")?;
    let o = reelkit(&[
        &"experiment",
        &"ope",
        &spec,
        &"--logger",
        &"popular",
        &"--candidates",
        &"unified,siloed,random",
        &"--runs",
        &"2",
        &"--bootstrap",
        &"40",
        &"--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let study: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ope_study.json"))?)?;
    assert_eq!(study["runs"], 2);
    // Every estimator × candidate × run, each beside a truth that is the
    // same for every estimator of a run and candidate.
    let trials = study["trials"].as_array().ok_or("trials")?;
    assert_eq!(trials.len(), 5 * 3 * 2);
    for t in trials {
        let twin = trials
            .iter()
            .find(|u| u["run"] == t["run"] && u["candidate"] == t["candidate"])
            .ok_or("twin")?;
        assert_eq!(t["truth"], twin["truth"]);
    }
    // `random` is far worse than the logging policy in truth.
    let random = trials
        .iter()
        .find(|t| t["candidate"] == "random")
        .ok_or("random")?;
    assert!(random["truth"].as_f64().ok_or("truth")? < -0.1, "{random}");
    for f in [
        "ope_study.md",
        "ope_study.html",
        "ope_study.svg",
        "trials.csv",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let md = std::fs::read_to_string(out.join("ope_study.md"))?;
    assert!(md.contains("Exploring costs"), "{md}");
    // A daily-retrained candidate: refused by its key, nothing written.
    let out2 = dir.path().join("refused");
    let daily = study_spec(dir.path(), "daily")?;
    let o = reelkit(&[
        &"experiment",
        &"ope",
        &daily,
        &"--candidates",
        &"unified,random",
        &"--runs",
        &"2",
        &"--out",
        &out2,
    ]);
    refused(&o, &out2, &["arms.unified.retrain", "never"]);
    let o = reelkit(&[
        &"experiment",
        &"ope",
        &spec,
        &"--unit",
        &"week",
        &"--out",
        &out2,
    ]);
    refused(&o, &out2, &["week", "page, session, day or user"]);
    Ok(())
}
