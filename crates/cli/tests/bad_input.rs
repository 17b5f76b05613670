//! The bad-input corpus: the `reelkit` binary given what a careless or
//! hostile user gives it (wrong, truncated, crafted or mistyped files, flags
//! out of range, outputs that are inputs). Every case asserts the exit code,
//! what the message names, and that the output directory holds nothing
//! afterwards (no output, no temporary file). The server's HTTP cases are in
//! `crates/serve/tests/http.rs`; this file is the command line's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int8Array, RecordBatch, UInt16Array,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Writes `columns` as an Arrow IPC file.
fn write_ipc(path: &Path, columns: Vec<(&str, ArrayRef)>) -> TestResult {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), false))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())?;
    let mut w = arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(path)?, &schema)?;
    w.write(&batch)?;
    w.finish()?;
    Ok(())
}

/// The inputs every case draws from, in `in/`.
fn fixtures(dir: &Path) -> TestResult {
    let w = |name: &str, text: &str| std::fs::write(dir.join(name), text);
    let mut good = String::from("uid,movie,w\n");
    for u in 0..20u64 {
        for i in 0..6u64 {
            good.push_str(&format!(
                "{u},{},{}\n",
                (u * 7 + i * 3) % 25,
                1 + (u + i) % 3
            ));
        }
    }
    w("good.csv", &good)?;
    w("good.txt", &good)?;
    w("header_only.csv", "uid,movie,w\n")?;
    w("nan_weight.csv", "uid,movie,w\n1,2,1\n3,4,NaN\n")?;
    w("neg_weight.csv", "uid,movie,w\n1,2,1\n3,4,-2\n")?;
    w("big_weight.csv", "uid,movie,w\n1,2,1\n3,4,1e300\n")?;
    w("zero_weight.csv", "uid,movie,w\n1,2,0\n3,4,0\n")?;
    w("huge_id.csv", "uid,movie\n18446744073709551615,2\n1,2\n")?;
    w("negative_id.csv", "uid,movie\n-5,2\n1,2\n")?;
    w("text_id.csv", "uid,movie\nalice,2\n1,2\n")?;
    w("short_row.csv", "uid,movie,w\n1,2,1\n3\n")?;
    w("open_quote.csv", "uid,movie\n1,\"2\n")?;
    w("text_weight.csv", "uid,movie,w\n1,2,lots\n")?;
    w(
        "isbn.csv",
        "User-ID,ISBN,Book-Rating\rann,\"\"\"034545104X\"\"\",0\rbo,\"\"\"034545104X\"\"\",5\rbo,\"\"\"0155061224\"\"\",3\r",
    )?;
    w("two_arms.csv", "user_id,variant\n1,a\n2,b\n1,b\n")?;
    w("empty_arm.csv", "user_id,variant\n1,\n2,b\n")?;
    w("strangers.csv", "user_id,variant\n1,a\n2,b\n3,a\n4,b\n")?;
    w("no_user.csv", "id,variant\n1,a\n")?;
    w("bad.toml", "[[metric]\nname = \n")?;
    w("unknown_col.toml", "[[metric]]\nname = \"m\"\nkind = \"mean\"\nnumerator = { agg = \"sum\", column = \"no_such_column\" }\n")?;
    w("bad_stats.json", "{\"arms\": [")?;
    w("short_token", "abc\n")?;
    w("spec_bad.toml", "name = \"x\"\n[experiment\n")?;
    let header = "user_id,session_id,ts_ms,video_id,creator_id,surface,position,duration_ms,watch_ms,liked,shared,commented,followed\n";
    w("events_far.csv", &format!("{header}1,1,1700000000000,5,9,reels,0,10000,5000,0,0,0,0\n2,2,9223372036854775807,5,9,reels,0,10000,5000,0,0,0,0\n"))?;
    w("events_none.csv", header)?;
    let row =
        |u: &str, watch: &str| format!("{u},1,1700000000000,5,9,reels,0,10000,{watch},0,0,0,0\n");
    w(
        "events_nan.csv",
        &format!("{header}{}{}", row("1", "5000"), row("2", "NaN")),
    )?;
    w(
        "events_negative.csv",
        &format!("{header}{}{}", row("1", "5000"), row("2", "-40")),
    )?;
    w(
        "events_no_user.csv",
        &format!("{header}{}{}", row("1", "5000"), row("", "300")),
    )?;
    w(
        "events_zero_duration.csv",
        &format!(
            "{header}{}2,1,1700000000000,5,9,reels,0,0,0,0,0,0,0\n",
            row("1", "5000")
        ),
    )?;
    w(
        "events_no_ts.csv",
        &format!(
            "{header}{}2,1,,5,9,reels,0,10000,300,0,0,0,0\n",
            row("1", "5000")
        ),
    )?;
    w("two_users.csv", "user_id,variant\n1,a\n2,b\n")?;
    w("metric_text_sum.toml", "[[metric]]\nname = \"surface_sum\"\nkind = \"mean\"\nnumerator = { agg = \"sum\", column = \"surface\" }\n")?;
    w(
        "events_text_user.csv",
        &format!("{header}{}{}", row("1", "5000"), row("alice", "300")),
    )?;
    w(
        "events_long_value.csv",
        &format!(
            "{header}{}{}",
            row("1", "5000"),
            row("2", &"9".repeat(1_000_000))
        ),
    )?;
    // Issue 34: a text input that never ends, and a spec whose folder is the output.
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.toml"))?;
    std::fs::create_dir_all(dir.join("specdir"))?;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/experiments/demo.toml"),
        dir.join("specdir/spec.toml"),
    )?;
    w("spec_unknown.toml", "name = \"x\"\nflavour = 3\n")?;
    w("world_bad.toml", "users = \"many\"\n")?;
    let demo = std::fs::read_to_string(root().join("datasets/experiments/demo.toml"))?;
    // Issue 30: a surface the world does not have, a share out of range.
    w(
        "spec_surface.toml",
        &demo.replace(
            "name = \"unified\"\nrecipe = \"unified\"",
            "name = \"unified\"\nrecipe = \"unified\"\nspecific = { reels = 0.1, feed = 0.2, watch = 0.3, stories = 0.5 }",
        ),
    )?;
    w(
        "spec_share.toml",
        &demo.replace(
            "name = \"unified\"\nrecipe = \"unified\"",
            "name = \"unified\"\nrecipe = \"unified\"\nspecific_grid = [0.0, 0.5, 1.5]",
        ),
    )?;
    w("videos_bad.csv", "video_id,format\n1,short\n")?;
    // A model of string ids (Book-Crossing's ISBNs, as exported).
    let o = reelkit(&[
        "train",
        "--interactions",
        &p(&dir.join("isbn.csv")),
        "--user-col",
        "User-ID",
        "--item-col",
        "ISBN",
        "--factors",
        "2",
        "--epochs",
        "2",
        "--out",
        &p(&dir.join("isbn.arrow")),
    ]);
    assert_eq!(o.0, 0, "{}", o.1);
    let model = dir.join("model.arrow");
    let o = reelkit(&[
        "train",
        "--interactions",
        &p(&dir.join("good.csv")),
        "--user-col",
        "uid",
        "--item-col",
        "movie",
        "--factors",
        "4",
        "--epochs",
        "2",
        "--out",
        &p(&model),
    ]);
    assert!(o.0 == 0, "fixture model: {}", o.1);
    let bytes = std::fs::read(&model)?;
    std::fs::write(dir.join("trunc.arrow"), &bytes[..bytes.len() / 2])?;
    std::fs::write(dir.join("empty.arrow"), b"")?;
    let mut junk = b"ARROW1\0\0".to_vec();
    junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    junk.extend(b"ARROW1");
    std::fs::write(dir.join("junk.arrow"), &junk)?;
    std::fs::write(dir.join("text.arrow"), &good)?;
    // A model whose embeddings overflow every score.
    let mut m = reelkit_ranker::Model {
        users: reelkit_ranker::IdMap::from_ids(vec![1, 2]),
        items: reelkit_ranker::IdMap::from_ids(vec![10, 11]),
        factors: reelkit_ranker::Factors {
            dim: 2,
            users: vec![3e38, 3e38, 1.0, 0.0],
            items: vec![3e38, 1.0, 0.0, 1.0],
            item_bias: vec![0.0; 2],
        },
        user_counts: vec![1, 1],
        surfaces: None,
        user_keys: None,
        item_keys: None,
        item_counts: vec![1, 1],
        meta: reelkit_ranker::ModelMeta::default(),
    };
    m.meta.source = "bad input corpus".into();
    m.save(&dir.join("huge.arrow"))?;
    // Arrow files with columns polars (as built) cannot hold.
    let n = 120;
    let uid: Vec<u64> = (0..n as u64).map(|i| i / 6).collect();
    let movie: Vec<u64> = (0..n as u64).map(|i| (i * 7) % 25).collect();
    write_ipc(
        &dir.join("int8_extra.arrow"),
        vec![
            ("uid", Arc::new(UInt64Array::from(uid.clone()))),
            ("movie", Arc::new(UInt64Array::from(movie.clone()))),
            ("flag", Arc::new(Int8Array::from(vec![1i8; n]))),
        ],
    )?;
    // A run-end encoded column: valid Arrow, but polars (as built) panics
    // reading such a schema; reelkit catches it and names the file.
    let runs = arrow_array::RunArray::<arrow_array::types::Int32Type>::try_new(
        &arrow_array::Int32Array::from(vec![n as i32]),
        &Int8Array::from(vec![1i8]),
    )?;
    write_ipc(
        &dir.join("ree_extra.arrow"),
        vec![
            ("uid", Arc::new(UInt64Array::from(uid.clone()))),
            ("movie", Arc::new(UInt64Array::from(movie.clone()))),
            ("runs", Arc::new(runs)),
        ],
    )?;
    write_ipc(
        &dir.join("u16_user.arrow"),
        vec![
            (
                "uid",
                Arc::new(UInt16Array::from(
                    uid.iter().map(|&u| u as u16).collect::<Vec<_>>(),
                )),
            ),
            ("movie", Arc::new(UInt64Array::from(movie))),
        ],
    )?;
    // Experiment files: the committed sample's events (one user in two to
    // each arm), and variants of them.
    let ev = reelkit_logs::read_events(&root().join("datasets/sample/events.parquet"))?;
    let mut users = ev.user_id.clone();
    users.sort_unstable();
    users.dedup();
    let assignments = reelkit_logs::Assignments {
        variant: (0..users.len())
            .map(|i| if i % 2 == 0 { "control" } else { "treatment" }.to_string())
            .collect(),
        user_id: users,
    };
    reelkit_logs::write_assignments(&dir.join("assignments.parquet"), &assignments)?;
    reelkit_logs::write_events(&dir.join("events.parquet"), &ev)?;
    let mut stray = ev.clone();
    stray.ts_ms[3] = 1i64 << 62;
    reelkit_logs::write_events(&dir.join("stray_ts.parquet"), &stray)?;
    let mut late = ev.clone();
    late.ts_ms[3] += 3_650 * 86_400_000;
    reelkit_logs::write_events(&dir.join("late_ts.parquet"), &late)?;
    // The events again with a fixed-size-list embedding column beside them.
    let mut df = reelkit_logs::read_frame(&dir.join("events.parquet"))?;
    let rows = df.height();
    reelkit_logs::write_frame(&dir.join("events.arrow"), &mut df)?;
    let values = Float32Array::from(vec![0.5f32; rows * 2]);
    let emb = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        2,
        Arc::new(values),
        None,
    )?;
    let file = std::fs::File::open(dir.join("events.arrow"))?;
    let reader = arrow_ipc::reader::FileReader::try_new(file, None)?;
    let schema = reader.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("emb", emb.data_type().clone(), true));
    let out_schema = Arc::new(Schema::new(fields));
    let mut w = arrow_ipc::writer::FileWriter::try_new(
        std::fs::File::create(dir.join("events_fsl.arrow"))?,
        &out_schema,
    )?;
    let mut offset = 0;
    for batch in reader {
        let batch = batch?;
        let mut cols = batch.columns().to_vec();
        cols.push(Arc::new(emb.slice(offset, batch.num_rows())));
        offset += batch.num_rows();
        w.write(&RecordBatch::try_new(out_schema.clone(), cols)?)?;
    }
    w.finish()?;
    Ok(())
}

/// A temporary directory holding the fixtures in `in/`.
fn with_fixtures() -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs)?;
    fixtures(&inputs)?;
    Ok((dir, inputs))
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Exit code (-1 for a signal) and stderr.
fn reelkit(args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_reelkit"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the reelkit binary runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// One case: `{in}` and `{out}` in the arguments stand for the fixtures'
/// and an empty output directory.
struct Case {
    name: &'static str,
    args: &'static str,
    code: i32,
    says: &'static [&'static str],
}

const fn fail(name: &'static str, args: &'static str, says: &'static [&'static str]) -> Case {
    Case {
        name,
        args,
        code: 1,
        says,
    }
}

const UIDS: &str = "--user-col uid --item-col movie";

fn cases() -> Vec<Case> {
    let _ = UIDS;
    vec![
        // reelkit train
        fail("train: missing file", "train --interactions {in}/nope.csv --out {out}/m.arrow", &["nope.csv", "No such file"]),
        fail("train: default columns absent", "train --interactions {in}/good.csv --out {out}/m.arrow", &["user_id", "uid, movie, w"]),
        fail("train: factors 0", "train --interactions {in}/good.csv --user-col uid --item-col movie --factors 0 --out {out}/m.arrow", &["factors", "1 ..= 1024"]),
        fail("train: epochs 0", "train --interactions {in}/good.csv --user-col uid --item-col movie --epochs 0 --out {out}/m.arrow", &["epochs", "1 ..= 10000"]),
        fail("train: negative reg", "train --interactions {in}/good.csv --user-col uid --item-col movie --reg=-1 --out {out}/m.arrow", &["reg", "0 ..= 1e6"]),
        fail("train: NaN alpha", "train --interactions {in}/good.csv --user-col uid --item-col movie --alpha NaN --out {out}/m.arrow", &["alpha"]),
        fail("train: cg steps 0", "train --interactions {in}/good.csv --user-col uid --item-col movie --cg-steps 0 --out {out}/m.arrow", &["cg_steps"]),
        fail("train: header only", "train --interactions {in}/header_only.csv --user-col uid --item-col movie --out {out}/m.arrow", &["header_only.csv", "no data rows"]),
        fail("train: NaN weight", "train --interactions {in}/nan_weight.csv --user-col uid --item-col movie --weight-col w --out {out}/m.arrow", &["nan_weight.csv", "w", "row 1"]),
        fail("train: negative weight", "train --interactions {in}/neg_weight.csv --user-col uid --item-col movie --weight-col w --out {out}/m.arrow", &["neg_weight.csv", "row 1", "negative"]),
        fail("train: weight beyond f32", "train --interactions {in}/big_weight.csv --user-col uid --item-col movie --weight-col w --out {out}/m.arrow", &["big_weight.csv", "row 1", "1e300"]),
        fail("train: no positive", "train --interactions {in}/zero_weight.csv --user-col uid --item-col movie --weight-col w --out {out}/m.arrow", &["no positive interactions"]),
        fail("train: uint16 user column", "train --interactions {in}/u16_user.arrow --user-col uid --item-col movie --out {out}/m.arrow", &["uid", "UInt16"]),
        fail("train: a column type polars panics on", "train --interactions {in}/ree_extra.arrow --user-col uid --item-col movie --out {out}/m.arrow", &["ree_extra.arrow", "polars cannot read this file"]),
        // Issue 31: text exports as they come, clear errors otherwise.
        fail("train: the wrong separator", "train --interactions {in}/good.csv --sep ; --user-col uid --item-col movie --out {out}/m.arrow", &["good.csv", "line 1", "separator `,`"]),
        fail("train: a row with too few fields", "train --interactions {in}/short_row.csv --user-col uid --item-col movie --weight-col w --out {out}/m.arrow", &["short_row.csv", "line 3", "1 fields"]),
        fail("train: an unclosed quote", "train --interactions {in}/open_quote.csv --user-col uid --item-col movie --out {out}/m.arrow", &["open_quote.csv", "line 2", "quote", "--skip-bad-rows"]),
        fail("train: a weight that is not a number", "train --interactions {in}/text_weight.csv --user-col uid --item-col movie --weight-col w --out {out}/m.arrow", &["text_weight.csv", "`w`", "lots"]),
        Case { name: "train: an unknown weighting", args: "train --interactions {in}/good.csv --user-col uid --item-col movie --weights cubic --out {out}/m.arrow", code: 2, says: &["--weights", "binary, log or linear"] },
        fail("recommend: a user id unknown to a string-id model", "recommend --model {in}/isbn.arrow --user nobody --out {out}/r.csv", &["--user nobody", "no such user"]),
        fail("train: csv given as events", "train --events {in}/good.csv --out {out}/m.arrow", &["good.csv", "missing column"]),
        Case { name: "train: both sources", args: "train --interactions {in}/good.csv --events {in}/events.parquet --out {out}/m.arrow", code: 2, says: &["--events"] },
        fail("train: output in a missing directory", "train --interactions {in}/good.csv --user-col uid --item-col movie --out {out}/no/such/dir/m.arrow", &["m.arrow"]),
        fail("train: zero threads", "--threads 0 train --interactions {in}/good.csv --user-col uid --item-col movie --out {out}/m.arrow", &["--threads"]),
        fail("train: a separator of two characters the file does not use", "train --interactions {in}/good.csv --separator ab --out {out}/m.arrow", &["good.csv", "line 1", "separator `,` rather than `ab`"]),
        fail("recommend: a text user for a numeric-user model", "recommend --model {in}/model.arrow --user nobody --out {out}/r.csv", &["--user nobody", "not a number", "model.arrow"]),
        // reelkit bench topk --index ivf
        fail("bench topk: ivf with zero lists", "bench topk --items 2000 --queries 8 --single 2 --index ivf --nlist 0", &["nlist", "1 or more"]),
        fail("bench topk: filter share above 1", "bench topk --items 2000 --queries 8 --single 2 --index ivf --filter-share 1.5", &["--filter-share", "1.5"]),
        // reelkit recommend
        fail("recommend: truncated model", "recommend --model {in}/trunc.arrow --out {out}/r.csv", &["trunc.arrow", "not a reelkit model file"]),
        fail("recommend: empty model", "recommend --model {in}/empty.arrow --out {out}/r.csv", &["empty.arrow", "not a reelkit model file"]),
        fail("recommend: junk between magic bytes", "recommend --model {in}/junk.arrow --out {out}/r.csv", &["junk.arrow", "not a reelkit model file"]),
        fail("recommend: text as model", "recommend --model {in}/text.arrow --out {out}/r.csv", &["text.arrow", "not a reelkit model file"]),
        fail("recommend: overflowing embeddings", "recommend --model {in}/huge.arrow --out {out}/r.csv", &["huge.arrow", "overflow"]),
        fail("recommend: missing model", "recommend --model {in}/nope.arrow --out {out}/r.csv", &["nope.arrow", "No such file"]),
        fail("recommend: k 0", "recommend --model {in}/model.arrow --k 0 --out {out}/r.csv", &["--k"]),
        fail("recommend: users without the column", "recommend --model {in}/model.arrow --users {in}/two_arms.csv --user-col uid --out {out}/r.csv", &["uid"]),
        fail("recommend: missing exclusions", "recommend --model {in}/model.arrow --exclude {in}/nope.csv --out {out}/r.csv", &["nope.csv"]),
        fail("recommend: unknown output extension", "recommend --model {in}/model.arrow --out {out}/r.xlsx", &["r.xlsx", "extension"]),
        // reelkit eval / tune
        fail("eval: truncated model", "eval --model {in}/trunc.arrow --train {in}/good.csv --test {in}/good.csv", &["trunc.arrow", "not a reelkit model file"]),
        fail("eval: missing test file", "eval --model {in}/model.arrow --train {in}/good.csv --test {in}/nope.csv --user-col uid --item-col movie", &["nope.csv"]),
        fail("tune: validation share 1.5", "tune --interactions {in}/good.csv --user-col uid --item-col movie --validation 1.5 --out {out}/m.arrow", &["--validation"]),
        // reelkit ab analyze
        fail("ab: missing events", "ab analyze --events {in}/nope.parquet --assignments {in}/assignments.parquet --out {out}/r", &["nope.parquet"]),
        fail("ab: user in two arms", "ab analyze --events {in}/events.parquet --assignments {in}/two_arms.csv --out {out}/r", &["two_arms.csv", "user 1", "two arms"]),
        fail("ab: arm without a name", "ab analyze --events {in}/events.parquet --assignments {in}/empty_arm.csv --out {out}/r", &["empty_arm.csv", "variant", "row 0"]),
        fail("ab: assignments without the events' users", "ab analyze --events {in}/events.parquet --assignments {in}/strangers.csv --out {out}/r", &["events.parquet", "assigned users"]),
        fail("ab: assignments without user_id", "ab analyze --events {in}/events.parquet --assignments {in}/no_user.csv --out {out}/r", &["no_user.csv", "user_id"]),
        fail("ab: timestamp 2^62 with --daily", "ab analyze --events {in}/stray_ts.parquet --assignments {in}/assignments.parquet --daily --out {out}/r", &["ts_ms", "not a Unix millisecond"]),
        fail("ab: a timestamp ten years ahead with --daily", "ab analyze --events {in}/late_ts.parquet --assignments {in}/assignments.parquet --daily --out {out}/r", &["ts_ms", "366"]),
        fail("ab: malformed metrics TOML", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --metrics {in}/bad.toml --out {out}/r", &["bad.toml"]),
        fail("ab: metric on a missing column", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --metrics {in}/unknown_col.toml --out {out}/r", &["no_such_column"]),
        fail("ab: unknown control", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --control nope --out {out}/r", &["nope"]),
        fail("ab: alpha 2", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --alpha 2 --out {out}/r", &["alpha"]),
        fail("ab: interactions as events", "ab analyze --events {in}/good.csv --assignments {in}/assignments.parquet --out {out}/r", &["good.csv", "missing column"]),
        fail("ab: malformed stats JSON", "ab analyze --stats {in}/bad_stats.json --out {out}/r", &["bad_stats.json"]),
        // reelkit ab sql / assign / power
        fail("sql: statement in a table name", "ab sql --events-table x;DROP_TABLE_y --assignments-table a", &["events table", "table name"]),
        fail("sql: comment in a table name", "ab sql --events-table ev --assignments-table a--b", &["assignments table"]),
        fail("assign: shares above 1", "ab assign --users {in}/strangers.csv --arms a=0.5,b=0.6 --salt s --out {out}/a.csv", &["--arms"]),
        fail("assign: negative share", "ab assign --users {in}/strangers.csv --arms a=-0.5,b=1.5 --salt s --out {out}/a.csv", &["--arms"]),
        fail("assign: nameless arm", "ab assign --users {in}/strangers.csv --arms =0.5,b=0.5 --salt s --out {out}/a.csv", &["--arms"]),
        fail("assign: users without user_id", "ab assign --users {in}/no_user.csv --arms a=0.5,b=0.5 --salt s --out {out}/a.csv", &["user_id"]),
        fail("power: zero effect", "ab power --events {in}/events.parquet --mde 0", &["mde"]),
        fail("power: power of 1", "ab power --events {in}/events.parquet --power 1", &["power"]),
        // reelkit simulate / experiment
        fail("simulate: malformed world", "simulate --config {in}/world_bad.toml --out {out}/sim", &["users"]),
        fail("simulate: unknown policy", "simulate --policy nope --out {out}/sim", &["nope"]),
        fail("simulate: ranker without model", "simulate --policy ranker --out {out}/sim", &["--model"]),
        fail("experiment: malformed spec", "experiment run {in}/spec_bad.toml --out {out}/e", &["spec_bad.toml"]),
        fail("experiment: unknown key", "experiment run {in}/spec_unknown.toml --out {out}/e", &["flavour"]),
        fail("experiment: factors 0", "experiment run {root}/datasets/experiments/demo.toml --set arms.siloed.factors=0 --out {out}/e", &["arms.siloed.factors"]),
        // Issue 30: per-surface shares, named by key, refused before anything runs.
        fail("experiment: a surface the world does not have", "experiment run {in}/spec_surface.toml --out {out}/e", &["arms.unified.specific.stories", "no surface `stories`"]),
        fail("experiment: a share grid out of range", "experiment run {in}/spec_share.toml --out {out}/e", &["arms.unified.specific_grid", "1.5"]),
        fail("experiment: a share above 1", "experiment run {root}/datasets/experiments/demo.toml --set arms.unified.specific=1.2 --out {out}/e", &["arms.unified.specific", "1.2"]),
        fail("experiment: a share as text", "experiment run {root}/datasets/experiments/demo.toml --set arms.unified.specific=most --out {out}/e", &["arms.unified.specific", "most"]),
        fail("experiment: shares on a shared-vector arm", "experiment run {root}/datasets/experiments/demo.toml --set arms.unified.user_vectors=shared --set arms.unified.specific=0.5 --out {out}/e", &["arms.unified.specific", "hierarchical"]),
        // Issue 34 (13): days named as written, never silently overridden.
        fail("experiment: world.days disagrees with the periods", "experiment run {root}/datasets/experiments/demo.toml --set world.days=1 --out {out}/e", &["world.days", "pre_period.days + experiment.days (14)", "got 1"]),
        fail("experiment: a pre-period of four billion days", "experiment run {root}/datasets/experiments/demo.toml --set pre_period.days=4000000000 --out {out}/e", &["pre_period.days", "2 ..= 365", "4000000000"]),
        fail("experiment: shares on a siloed arm", "experiment run {root}/datasets/experiments/demo.toml --set arms.siloed.specific=0.5 --out {out}/e", &["arms.siloed.specific", "unified"]),
        fail("train: per-surface from interactions", "train --interactions {in}/good.csv --user-col uid --item-col movie --per-surface --out {out}/m.arrow", &["--per-surface", "--events"]),
        Case { name: "train: a share out of range", args: "train --events {in}/events.parquet --per-surface --specific 2 --out {out}/m.arrow", code: 2, says: &["--specific", "[0, 1]"] },
        Case { name: "train: a surface the log does not have", args: "train --events {in}/events.parquet --per-surface --specific reels=0,feed=0,stories=1 --out {out}/m.arrow", code: 2, says: &["--specific", "no surface `stories`"] },
        Case { name: "train: shares without --per-surface", args: "train --events {in}/events.parquet --specific 0.5 --out {out}/m.arrow", code: 2, says: &["--per-surface"] },
        Case { name: "train: a video share out of range", args: "train --events {in}/events.parquet --per-surface --item-specific watch=1.5 --out {out}/m.arrow", code: 2, says: &["--item-specific", "[0, 1]"] },
        Case { name: "train: video shares without --per-surface", args: "train --events {in}/events.parquet --item-specific 1 --out {out}/m.arrow", code: 2, says: &["--per-surface"] },
        fail("recommend: a surface of a model without surfaces", "recommend --model {in}/model.arrow --surface watch --out {out}/r.csv", &["--surface watch", "--per-surface"]),
        // reelkit serve (refused before listening)
        fail("serve: truncated model", "serve --model {in}/trunc.arrow --addr 127.0.0.1:0", &["trunc.arrow", "not a reelkit model file"]),
        fail("serve: short admin token", "serve --model {in}/model.arrow --addr 127.0.0.1:0 --admin-token-file {in}/short_token", &["16 characters"]),
        fail("serve: one name for two models", "serve --model a={in}/model.arrow --model a={in}/model.arrow --addr 127.0.0.1:0", &["a"]),
        fail("serve: catalogue without creator_id", "serve --model {in}/model.arrow --videos {in}/videos_bad.csv --addr 127.0.0.1:0", &["videos_bad.csv", "creator_id"]),
        // Issue 34, round two.
        fail("threads: far beyond the cores", "--threads 100000 simulate --users 50 --days 1 --out {out}/sim", &["--threads 100000", "cores"]),
        fail("serve: max-k 0", "serve --model {in}/model.arrow --addr 127.0.0.1:0 --max-k 0", &["--max-k"]),
        fail("serve: explore 1.5", "serve --model {in}/model.arrow --addr 127.0.0.1:0 --explore 1.5", &["--explore 1.5", "(0, 1)"]),
        fail("serve: explore an interleaving", "serve --model a={in}/model.arrow --model b={in}/model.arrow --experiment interleave --addr 127.0.0.1:0 --explore 0.1", &["--explore", "interleave"]),
        fail("serve: a body limit nothing fits", "serve --model {in}/model.arrow --addr 127.0.0.1:0 --max-body-bytes 0", &["--max-body-bytes"]),
        fail("serve: a public admin listener without a token", "serve --model {in}/model.arrow --addr 127.0.0.1:0 --admin-addr 0.0.0.0:0", &["--admin-addr 0.0.0.0:0", "loopback", "--admin-token-file"]),
        fail("ab: sequential N of 0", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --sequential --sequential-n 0 --out {out}/r", &["--sequential-n"]),
        fail("ab: an experiment name that climbs out", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --experiment ../../escape", &["--experiment", "../../escape"]),
        fail("ab: metrics that never end", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --metrics {in}/zero.toml --out {out}/r", &["zero.toml", "not a regular file"]),
        fail("ab sql: metrics that never end", "ab sql --metrics {in}/zero.toml", &["zero.toml", "not a regular file"]),
        fail("simulate: a config that never ends", "simulate --config {in}/zero.toml --out {out}/sim", &["zero.toml", "not a regular file"]),
        fail("experiment: a spec that never ends", "experiment run {in}/zero.toml --out {out}/e", &["zero.toml", "not a regular file"]),
        fail("experiment: output over the spec's folder", "experiment run {in}/specdir/spec.toml --set world.users=300 --out {in}/specdir", &["spec.toml", "--out"]),
        fail("ab power: a timestamp far in the future", "ab power --events {in}/events_far.csv", &["events_far.csv", "ten years"]),
        fail("ab power: no events", "ab power --events {in}/events_none.csv", &["events_none.csv"]),
        fail("calibrate: a billion runs", "ab calibrate --runs 1000000000 --users 100 --out {out}/cal", &["--runs 1000000000", "of memory"]),
        fail("bench topk: a billion items", "bench topk --items 1000000000 --queries 8", &["--items 1000000000", "of memory"]),
        fail("bench ab: a trillion impressions", "bench ab --impressions 1000000000000 --users 10", &["--impressions 1000000000000", "of memory"]),
        fail("bench serve: a billion items", "bench serve --items 1000000000", &["--items 1000000000", "of memory"]),
        fail("simulate: more users than memory", "simulate --users 40000000 --days 30 --out {out}/sim", &["40000000 users", "of memory"]),
        fail("experiment: a year of 200,000 users", "experiment run {root}/datasets/experiments/demo.toml --set world.users=200000 --set experiment.days=365 --out {out}/e", &["200000 users", "of memory"]),
        fail("ab: a NaN watch time", "ab analyze --events {in}/events_nan.csv --assignments {in}/two_users.csv --out {out}/r", &["events_nan.csv", "watch_ms", "row 1", "NaN"]),
        fail("ab: a negative watch time", "ab analyze --events {in}/events_negative.csv --assignments {in}/two_users.csv --out {out}/r", &["events_negative.csv", "watch_ms", "row 1", "negative"]),
        fail("ab: an event without a user", "ab analyze --events {in}/events_no_user.csv --assignments {in}/two_users.csv --out {out}/r", &["events_no_user.csv", "user_id", "row 1"]),
        fail("ab: a text user id in an event log", "ab analyze --events {in}/events_text_user.csv --assignments {in}/two_users.csv --out {out}/r", &["events_text_user.csv"]),
        fail("ab: a megabyte of a value", "ab analyze --events {in}/events_long_value.csv --assignments {in}/two_users.csv --out {out}/r", &["events_long_value.csv"]),
        fail("ab: a metric summing text", "ab analyze --events {in}/events.parquet --assignments {in}/assignments.parquet --metrics {in}/metric_text_sum.toml --out {out}/r", &["surface_sum", "surface", "not numbers"]),
        fail("eval: k 0", "eval --model {in}/model.arrow --train {in}/good.csv --test {in}/good.csv --user-col uid --item-col movie --k 0", &["--k"]),
        fail("tune: report over the model", "tune --interactions {in}/good.csv --user-col uid --item-col movie --out {out}/m.arrow --report {out}/m.arrow", &["--report", "same file as --out"]),
        fail("serve: zero connections", "serve --model {in}/model.arrow --addr 127.0.0.1:0 --max-connections 0", &["--max-connections"]),
    ]
}

#[test]
fn every_bad_input_is_a_clear_error_that_leaves_nothing() -> TestResult {
    let (dir, inputs) = with_fixtures()?;
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{k}"));
        std::fs::create_dir(&out)?;
        let line = case
            .args
            .replace("{in}", &p(&inputs))
            .replace("{out}", &p(&out))
            .replace("{root}", &p(&root()));
        let args: Vec<&str> = line.split_whitespace().collect();
        let (code, stderr) = reelkit(&args);
        let mut wrong = Vec::new();
        if code != case.code {
            wrong.push(format!("exit {code}, expected {}", case.code));
        }
        for s in case.says {
            if !stderr.contains(s) {
                wrong.push(format!("does not say {s:?}"));
            }
        }
        if stderr.contains("panicked") || stderr.contains("internal error") {
            wrong.push("panicked".into());
        }
        // Issue 34: no polars advice to Python users, no megabyte of a value.
        if ["infer_schema_length", "schema_overrides", "ignore_errors"]
            .iter()
            .any(|h| stderr.contains(h))
        {
            wrong.push("names a polars option".into());
        }
        if stderr.len() > 4000 {
            wrong.push(format!("{} bytes of stderr", stderr.len()));
        }
        let left: Vec<_> = std::fs::read_dir(&out)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !left.is_empty() {
            wrong.push(format!("left {left:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}",
                case.name,
                wrong.join("; "),
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

/// Inputs that must work: columns polars cannot hold that no one needs are
/// left out with a warning (they used to panic polars, exit 101).
#[test]
fn unreadable_unused_columns_are_skipped_with_a_warning() -> TestResult {
    let (dir, inputs) = with_fixtures()?;
    let out = dir.path().join("out");
    let (code, stderr) = reelkit(&[
        "train",
        "--interactions",
        &p(&inputs.join("int8_extra.arrow")),
        "--user-col",
        "uid",
        "--item-col",
        "movie",
        "--factors",
        "4",
        "--epochs",
        "2",
        "--out",
        &p(&out.with_extension("arrow")),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("ignoring column `flag` of type Int8"),
        "{stderr}"
    );
    let (code, stderr) = reelkit(&[
        "ab",
        "analyze",
        "--events",
        &p(&inputs.join("events_fsl.arrow")),
        "--assignments",
        &p(&inputs.join("assignments.parquet")),
        "--out",
        &p(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("ignoring column `emb` of type FixedSizeList<Float32; 2>"),
        "{stderr}"
    );
    assert!(out.join("report.json").exists());
    Ok(())
}

/// An output that is an input is refused, and the input is left as it was.
#[test]
fn outputs_never_overwrite_inputs() -> TestResult {
    let (_dir, inputs) = with_fixtures()?;
    let ev = inputs.join("events.parquet");
    let model = inputs.join("model.arrow");
    let users = inputs.join("strangers.csv");
    let before: Vec<Vec<u8>> = [&ev, &model, &users]
        .iter()
        .map(std::fs::read)
        .collect::<Result<_, _>>()?;
    // The same files by other spellings too.
    let ev_alias = format!("{}/../in/events.parquet", p(&inputs));
    for (args, says) in [
        (
            vec!["train", "--events", &p(&ev), "--out", &ev_alias],
            "--events",
        ),
        (
            vec!["recommend", "--model", &p(&model), "--out", &p(&model)],
            "--model",
        ),
        // It wrote the index over the model, exit 0.
        (
            vec!["index", "--model", &p(&model), "--out", &p(&model)],
            "--model",
        ),
        (
            vec![
                "ab",
                "assign",
                "--users",
                &p(&users),
                "--arms",
                "a=0.5,b=0.5",
                "--salt",
                "s",
                "--out",
                &p(&users),
            ],
            "--users",
        ),
    ] {
        let (code, stderr) = reelkit(&args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("same file") && stderr.contains(says),
            "{stderr}"
        );
    }
    let after: Vec<Vec<u8>> = [&ev, &model, &users]
        .iter()
        .map(std::fs::read)
        .collect::<Result<_, _>>()?;
    assert!(before == after, "an input changed");
    Ok(())
}

/// Ctrl-C while the event log is being written: exit 130, the temporary file
/// removed, and the output directory the command created removed with it
/// (it used to leave a 237 MB `.events.parquet.PID.tmp`).
#[cfg(unix)]
#[test]
fn an_interrupted_simulation_leaves_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("sim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_reelkit"))
        .args([
            "simulate",
            "--users",
            "20000",
            "--days",
            "20",
            "--out",
            &p(&out),
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let t = std::time::Instant::now();
    let writing = || {
        std::fs::read_dir(&out).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        })
    };
    while !writing() && t.elapsed() < std::time::Duration::from_secs(300) {
        if child.try_wait()?.is_some() {
            return Err("the simulation ended before it was interrupted".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(writing(), "no temporary file appeared");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let out_status = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out_status.stderr);
    assert_eq!(out_status.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!out.exists(), "the output directory was left behind");
    Ok(())
}

/// CSV ids above i64::MAX read as they do from Parquet (inference made them
/// signed and failed), and a model does not carry the command line that made
/// it (paths, tokens) in its metadata.
#[test]
fn big_csv_ids_train_and_models_keep_no_command_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("secret-dir-4711");
    std::fs::create_dir(&secret)?;
    let csv = secret.join("big.csv");
    let mut text = String::from("uid,movie\n");
    for u in 0..12u64 {
        for i in 0..4u64 {
            text.push_str(&format!("{},{}\n", u64::MAX - u, 10 + (u + i) % 7));
        }
    }
    std::fs::write(&csv, text)?;
    let model = secret.join("m.arrow");
    let (code, stderr) = reelkit(&[
        "train",
        "--interactions",
        &p(&csv),
        "--user-col",
        "uid",
        "--item-col",
        "movie",
        "--factors",
        "4",
        "--epochs",
        "2",
        "--out",
        &p(&model),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let m = reelkit_ranker::Ranker::open(&model)?;
    assert!(
        m.model().users.get(u64::MAX).is_some(),
        "the largest id is a user"
    );
    let source = &m.model().meta.source;
    assert!(
        source.starts_with("reelkit ") && source.ends_with(" train"),
        "{source}"
    );
    let bytes = std::fs::read(&model)?;
    let needle = b"secret-dir-4711";
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the model file holds a path from the command line"
    );
    Ok(())
}

/// Method, path, body, status and error code of one HTTP case.
type HttpCase<'a> = (&'a str, &'a str, Option<&'a [u8]>, u16, &'a str);

/// Kills the server when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The HTTP cases against a real `reelkit serve` process (the library's
/// server has its own in `crates/serve/tests/http.rs`): each bad request is
/// a JSON error with the right status and code, and the server lives on.
#[test]
fn http_cases_against_a_real_serve_process() -> TestResult {
    use std::io::BufRead;
    let (_dir, inputs) = with_fixtures()?;
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_reelkit"))
            .args(["serve", "--model", &p(&inputs.join("model.arrow"))])
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()?,
    );
    let stderr = child.0.stderr.take().ok_or("no stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().ok_or("serve ended before listening")??;
        if let Some(at) = line
            .strip_prefix("serving")
            .and_then(|l| l.split("http://").nth(1))
        {
            break at.trim().parse::<std::net::SocketAddr>()?;
        }
    };
    let big = vec![b' '; 2 << 20];
    let cases: Vec<HttpCase<'_>> = vec![
        (
            "POST",
            "/v1/recommend",
            Some(br#"{"user_id": "#),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/recommend",
            Some(br#"{"user_id": 1, "k": NaN}"#),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/recommend",
            Some(br#"{"user_id": "abc"}"#),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/recommend",
            Some(br#"{"user_id": 1, "k": 0}"#),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/recommend",
            Some(br#"{"user_id": 1, "flavour": 1}"#),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/score",
            Some(br#"{"user_id": 1, "videos": [3]}"#),
            422,
            "invalid_request",
        ),
        ("POST", "/v1/recommend", Some(&big), 413, "body_too_large"),
        ("GET", "/v1/recommend", None, 405, "method_not_allowed"),
        ("POST", "/admin/reload", None, 404, "not_found"),
        ("GET", "/nope", None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        // A fresh connection per case: a 413 or 400 may close it.
        let mut c = reelkit_serve::client::Client::connect(addr)?;
        let r = c.send(method, path, body)?;
        let v = r.json()?;
        assert_eq!(r.status, status, "{method} {path}: {v}");
        assert_eq!(v["error"], code, "{method} {path}: {v}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    }
    // An unknown video is not an error of the request: its score is null
    // and it is named.
    let mut c = reelkit_serve::client::Client::connect(addr)?;
    let body = br#"{"user_id": 1, "video_ids": [999999]}"#;
    let r = c.send("POST", "/v1/score", Some(body))?;
    let v = r.json()?;
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(v["unknown_videos"], serde_json::json!([999999]), "{v}");
    assert!(v["scores"][0]["score"].is_null(), "{v}");
    // Still serving after all of it.
    let r = c.send("POST", "/v1/recommend", Some(br#"{"user_id": 1, "k": 3}"#))?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()?["items"].as_array().map(Vec::len), Some(3));
    Ok(())
}

/// Refusals of sizes under an address-space limit, and whether another limit
/// (a container's, the machine's) refused one instead: then the run did not
/// probe the address-space boundary, and a machine with little memory to
/// spare refuses every size cleanly.
#[derive(Debug, Default)]
struct Refusals {
    count: usize,
    by_other_limit: Option<String>,
}

impl Refusals {
    fn probed(&self) -> bool {
        self.by_other_limit.is_none()
    }
}

/// Counts a clean refusal; anything but success or a refusal is the error.
fn tally(refused: &mut Refusals, code: Option<i32>, err: &str) -> Result<(), String> {
    match code {
        Some(0) => Ok(()),
        Some(1) if err.contains("ask for less") => {
            refused.count += 1;
            if !err.contains("(the address-space limit, ulimit -v)") {
                refused
                    .by_other_limit
                    .get_or_insert_with(|| err.to_string());
            }
            Ok(())
        }
        other => Err(format!("{other:?} {err}")),
    }
}

/// Under an address-space limit (`ulimit -v`, as a container or a batch
/// system sets one), the largest sizes the size policy accepts either run or
/// are refused with the estimate — never an allocation abort (exit 134).
#[cfg(target_os = "linux")]
#[test]
fn sizes_near_an_address_space_limit_run_or_are_refused_cleanly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = env!("CARGO_MANIFEST_DIR").to_string() + "/../..";
    let bin = env!("CARGO_BIN_EXE_reelkit");
    let under_limit = |kib: u64, args: &str| -> std::io::Result<(Option<i32>, String)> {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {kib} && exec \"$0\" {args}"))
            .arg(bin)
            .output()?;
        Ok((
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    };
    let out = p(dir.path());
    // The policy reserves address space per thread: on a machine with many
    // cores it refuses every size here, which is clean but not a boundary.
    let few_cores = std::thread::available_parallelism().map_or(true, |n| n.get() <= 4);
    let mut refused = Refusals::default();
    // The policy's boundary under 1 GiB lies between these sizes (2 cores):
    // about 25,000 users, a few thousand lower when a pool's threads have
    // mapped their arenas before the check (a CI machine refused 20,000).
    for (i, users) in [5_000, 20_000, 40_000, 80_000, 10_000_000]
        .iter()
        .enumerate()
    {
        let (code, err) = under_limit(
            1 << 20,
            &format!("simulate --users {users} --days 2 --videos 1000 --out {out}/sim{i}"),
        )?;
        tally(&mut refused, code, &err).map_err(|e| format!("simulate --users {users}: {e}"))?;
    }
    assert!(
        !few_cores || !refused.probed() || (1..5).contains(&refused.count),
        "the boundary is inside the sizes tried: {refused:?}"
    );
    // Experiments around the estimate's boundary at 1.5 GiB (about 2,250 users
    // on 2 cores), and one far past it.
    refused = Refusals::default();
    for (i, users) in [1_000, 2_250, 2_500, 3_500, 200_000].iter().enumerate() {
        let (code, err) = under_limit(
            3 << 19,
            &format!(
                "experiment run {root}/datasets/experiments/demo.toml --set world.users={users} \
                 --out {out}/exp{i}"
            ),
        )?;
        tally(&mut refused, code, &err).map_err(|e| format!("experiment, {users} users: {e}"))?;
    }
    assert!(
        !few_cores || !refused.probed() || (1..5).contains(&refused.count),
        "the boundary is inside the sizes tried: {refused:?}"
    );
    Ok(())
}

/// One event schema for every reader: a log `train` refuses, `ab analyze` and
/// `ab power` refuse too, naming the same column — none computes on rows
/// another refuses (a NaN watch time once gave "+0.00% inconclusive").
#[test]
fn every_event_reader_refuses_the_same_rows() -> TestResult {
    let (dir, inputs) = with_fixtures()?;
    let out = dir.path().join("out");
    for (file, column) in [
        ("events_nan.csv", "watch_ms"),
        ("events_negative.csv", "watch_ms"),
        ("events_no_user.csv", "user_id"),
        ("events_text_user.csv", "user_id"),
        ("events_zero_duration.csv", "duration_ms"),
        ("events_no_ts.csv", "ts_ms"),
    ] {
        let ev = p(&inputs.join(file));
        let assignments = p(&inputs.join("two_users.csv"));
        let model = p(&out.join("m.arrow"));
        let report = p(&out.join("r"));
        for args in [
            vec!["train", "--events", &ev, "--out", &model],
            vec![
                "ab",
                "analyze",
                "--events",
                &ev,
                "--assignments",
                &assignments,
                "--out",
                &report,
            ],
            vec!["ab", "power", "--events", &ev],
        ] {
            let (code, stderr) = reelkit(&args);
            assert_eq!(code, 1, "{args:?} accepted {file}: {stderr}");
            assert!(
                stderr.contains(file) && stderr.contains(column),
                "{args:?} on {file}: {stderr}"
            );
        }
        assert!(
            !out.exists() || std::fs::read_dir(&out)?.next().is_none(),
            "{file}: output written"
        );
    }
    Ok(())
}
