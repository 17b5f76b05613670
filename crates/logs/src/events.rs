//! The impression log held as columns.

use std::path::Path;

use polars::prelude::*;

use crate::columns;
use crate::error::{Error, Result};
use crate::io::{read_frame, write_frame};
use crate::schema::{self, Surface};

/// One impression, as produced by the simulator or read from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The user shown the video.
    pub user_id: u64,
    /// The session (unique across users).
    pub session_id: u64,
    /// When the video was shown, Unix milliseconds (UTC).
    pub ts_ms: i64,
    /// The video shown.
    pub video_id: u64,
    /// Its creator.
    pub creator_id: u64,
    /// Where it was shown (reels, feed or watch).
    pub surface: Surface,
    /// 0-based slot in the session's feed.
    pub position: u32,
    /// The video's length, milliseconds.
    pub duration_ms: u32,
    /// How long the user watched, milliseconds (above `duration_ms` when looped).
    pub watch_ms: u32,
    /// The user liked it.
    pub liked: bool,
    /// The user shared it.
    pub shared: bool,
    /// The user commented on it.
    pub commented: bool,
    /// The user followed its creator from it.
    pub followed: bool,
}

/// A validated impression log in columnar form (one `Vec` per schema column).
///
/// `variant` is present when the log was written by an experiment run;
/// `propensity` when some impressions were shown by an exploring policy (NaN
/// where one was not: a null in the file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Events {
    /// [`Event::user_id`] of each impression.
    pub user_id: Vec<u64>,
    /// [`Event::session_id`] of each impression.
    pub session_id: Vec<u64>,
    /// [`Event::ts_ms`] of each impression.
    pub ts_ms: Vec<i64>,
    /// [`Event::video_id`] of each impression.
    pub video_id: Vec<u64>,
    /// [`Event::creator_id`] of each impression.
    pub creator_id: Vec<u64>,
    /// [`Event::surface`] of each impression.
    pub surface: Vec<Surface>,
    /// [`Event::position`] of each impression.
    pub position: Vec<u32>,
    /// [`Event::duration_ms`] of each impression.
    pub duration_ms: Vec<u32>,
    /// [`Event::watch_ms`] of each impression.
    pub watch_ms: Vec<u32>,
    /// [`Event::liked`] of each impression.
    pub liked: Vec<bool>,
    /// [`Event::shared`] of each impression.
    pub shared: Vec<bool>,
    /// [`Event::commented`] of each impression.
    pub commented: Vec<bool>,
    /// [`Event::followed`] of each impression.
    pub followed: Vec<bool>,
    /// The arm each impression's user was in (experiment logs only).
    pub variant: Option<Vec<String>>,
    /// The logging policy's probability of each impression's video at its
    /// position, in (0, 1]; NaN where it was not logged.
    pub propensity: Option<Vec<f64>>,
}

impl Events {
    /// An empty log with room for `n` impressions.
    pub fn with_capacity(n: usize) -> Self {
        Events {
            user_id: Vec::with_capacity(n),
            session_id: Vec::with_capacity(n),
            ts_ms: Vec::with_capacity(n),
            video_id: Vec::with_capacity(n),
            creator_id: Vec::with_capacity(n),
            surface: Vec::with_capacity(n),
            position: Vec::with_capacity(n),
            duration_ms: Vec::with_capacity(n),
            watch_ms: Vec::with_capacity(n),
            liked: Vec::with_capacity(n),
            shared: Vec::with_capacity(n),
            commented: Vec::with_capacity(n),
            followed: Vec::with_capacity(n),
            variant: None,
            propensity: None,
        }
    }

    /// Number of impressions.
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    /// Whether the log holds no impression.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }

    /// Appends one impression (logs with a `variant` column use [`Events::push_in`]).
    pub fn push(&mut self, e: &Event) {
        self.user_id.push(e.user_id);
        self.session_id.push(e.session_id);
        self.ts_ms.push(e.ts_ms);
        self.video_id.push(e.video_id);
        self.creator_id.push(e.creator_id);
        self.surface.push(e.surface);
        self.position.push(e.position);
        self.duration_ms.push(e.duration_ms);
        self.watch_ms.push(e.watch_ms);
        self.liked.push(e.liked);
        self.shared.push(e.shared);
        self.commented.push(e.commented);
        self.followed.push(e.followed);
        if let Some(p) = &mut self.propensity {
            p.push(f64::NAN);
        }
    }

    /// Sets the last impression's propensity (adding the column, NaN for
    /// the impressions before, when the log has none yet).
    pub fn set_last_propensity(&mut self, propensity: f64) {
        let n = self.len();
        if n == 0 {
            return;
        }
        let col = self.propensity.get_or_insert_with(|| vec![f64::NAN; n]);
        col[n - 1] = propensity;
    }

    /// Appends one impression served in arm `variant`.
    pub fn push_in(&mut self, e: &Event, variant: &str) {
        let n = self.len();
        self.push(e);
        self.variant
            .get_or_insert_with(|| Vec::with_capacity(n + 1))
            .push(variant.to_string());
    }

    /// Appends all impressions of `other`.
    pub fn append(&mut self, other: &mut Events) {
        let self_empty = self.is_empty();
        match (&mut self.variant, other.variant.take()) {
            (Some(a), Some(mut b)) => a.append(&mut b),
            (None, None) => {}
            (None, Some(b)) if self_empty => self.variant = Some(b),
            (Some(_), None) if other.is_empty() => {}
            _ => panic!("Events::append: both logs must have a variant column, or neither"),
        }
        // Propensities: a log without the column has none logged (NaN).
        let (n_self, n_other) = (self.len(), other.len());
        match (&mut self.propensity, other.propensity.take()) {
            (Some(a), Some(mut b)) => a.append(&mut b),
            (Some(a), None) => a.extend(std::iter::repeat_n(f64::NAN, n_other)),
            (None, Some(b)) => {
                let mut all = vec![f64::NAN; n_self];
                all.extend(b);
                self.propensity = Some(all);
            }
            (None, None) => {}
        }
        self.user_id.append(&mut other.user_id);
        self.session_id.append(&mut other.session_id);
        self.ts_ms.append(&mut other.ts_ms);
        self.video_id.append(&mut other.video_id);
        self.creator_id.append(&mut other.creator_id);
        self.surface.append(&mut other.surface);
        self.position.append(&mut other.position);
        self.duration_ms.append(&mut other.duration_ms);
        self.watch_ms.append(&mut other.watch_ms);
        self.liked.append(&mut other.liked);
        self.shared.append(&mut other.shared);
        self.commented.append(&mut other.commented);
        self.followed.append(&mut other.followed);
    }

    /// The impression at `i`.
    pub fn get(&self, i: usize) -> Event {
        Event {
            user_id: self.user_id[i],
            session_id: self.session_id[i],
            ts_ms: self.ts_ms[i],
            video_id: self.video_id[i],
            creator_id: self.creator_id[i],
            surface: self.surface[i],
            position: self.position[i],
            duration_ms: self.duration_ms[i],
            watch_ms: self.watch_ms[i],
            liked: self.liked[i],
            shared: self.shared[i],
            commented: self.commented[i],
            followed: self.followed[i],
        }
    }

    /// The log as a polars `DataFrame` with the schema's column names and types.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let surface: Vec<&str> = self.surface.iter().map(|s| s.as_str()).collect();
        let mut cols = vec![
            Column::new(schema::USER_ID.into(), &self.user_id),
            Column::new(schema::SESSION_ID.into(), &self.session_id),
            Column::new(schema::TS_MS.into(), &self.ts_ms),
            Column::new(schema::VIDEO_ID.into(), &self.video_id),
            Column::new(schema::CREATOR_ID.into(), &self.creator_id),
            Column::new(schema::SURFACE.into(), surface),
            Column::new(schema::POSITION.into(), &self.position),
            Column::new(schema::DURATION_MS.into(), &self.duration_ms),
            Column::new(schema::WATCH_MS.into(), &self.watch_ms),
            Column::new(schema::LIKED.into(), &self.liked),
            Column::new(schema::SHARED.into(), &self.shared),
            Column::new(schema::COMMENTED.into(), &self.commented),
            Column::new(schema::FOLLOWED.into(), &self.followed),
        ];
        if let Some(v) = &self.variant {
            cols.push(Column::new(schema::VARIANT.into(), v));
        }
        if let Some(p) = &self.propensity {
            let nullable: Vec<Option<f64>> =
                p.iter().map(|&x| (!x.is_nan()).then_some(x)).collect();
            cols.push(Column::new(schema::PROPENSITY.into(), nullable));
        }
        DataFrame::new(self.len(), cols).map_err(|e| Error::polars("<events>", e))
    }

    /// Validates and converts a `DataFrame` read from `path` (used in error messages).
    ///
    /// Checks every required column's presence and type, nulls, negative or NaN
    /// durations and watch times, zero durations and unknown surfaces.
    pub fn from_dataframe(path: &Path, df: &DataFrame) -> Result<Events> {
        let col = |name| columns::column(path, df, name);
        // Check presence of every column first so the error lists the first missing one.
        for name in schema::EVENT_COLUMNS {
            col(name)?;
        }
        let duration_ms = columns::u32s(path, col(schema::DURATION_MS)?)?;
        if let Some(row) = duration_ms.iter().position(|&d| d == 0) {
            return Err(Error::InvalidValue {
                path: path.to_path_buf(),
                column: schema::DURATION_MS.to_string(),
                row,
                value: "0".to_string(),
                reason: "a video's duration must be positive",
            });
        }
        let variant = match df.column(schema::VARIANT) {
            Ok(c) => Some(columns::strings(path, c)?),
            Err(_) => None,
        };
        let propensity = match df.column(schema::PROPENSITY) {
            Ok(c) => Some(columns::probabilities(path, c)?),
            Err(_) => None,
        };
        Ok(Events {
            user_id: columns::u64s(path, col(schema::USER_ID)?)?,
            session_id: columns::u64s(path, col(schema::SESSION_ID)?)?,
            ts_ms: columns::i64s(path, col(schema::TS_MS)?)?,
            video_id: columns::u64s(path, col(schema::VIDEO_ID)?)?,
            creator_id: columns::u64s(path, col(schema::CREATOR_ID)?)?,
            surface: columns::parsed(
                path,
                col(schema::SURFACE)?,
                "unknown surface (expected reels, feed or watch)",
                |s| s.parse().ok(),
            )?,
            position: columns::u32s(path, col(schema::POSITION)?)?,
            duration_ms,
            watch_ms: columns::u32s(path, col(schema::WATCH_MS)?)?,
            liked: columns::bools(path, col(schema::LIKED)?)?,
            shared: columns::bools(path, col(schema::SHARED)?)?,
            commented: columns::bools(path, col(schema::COMMENTED)?)?,
            followed: columns::bools(path, col(schema::FOLLOWED)?)?,
            variant,
            propensity,
        })
    }
}

/// Reads and validates an event log (Parquet, CSV/TSV or Arrow IPC by extension).
pub fn read_events(path: &Path) -> Result<Events> {
    let df = read_frame(path)?;
    Events::from_dataframe(path, &df)
}

/// Writes an event log atomically, format by extension.
pub fn write_events(path: &Path, events: &Events) -> Result<()> {
    let mut df = events.to_dataframe()?;
    write_frame(path, &mut df)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn sample() -> Events {
        let mut ev = Events::default();
        for i in 0..5u32 {
            ev.push(&Event {
                user_id: 10 + u64::from(i % 2),
                session_id: 100 + u64::from(i % 2),
                ts_ms: 1_700_000_000_000 + i64::from(i) * 1000,
                video_id: 1000 + u64::from(i),
                creator_id: 7,
                surface: Surface::ALL[i as usize % 3],
                position: i / 2,
                duration_ms: 15_000,
                watch_ms: 4_000 * i,
                liked: i == 3,
                shared: false,
                commented: i == 4,
                followed: false,
            });
        }
        ev
    }

    #[test]
    fn events_round_trip_in_every_format() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ev = sample();
        for ext in ["parquet", "csv", "arrow"] {
            let path = dir.path().join(format!("events.{ext}"));
            write_events(&path, &ev)?;
            assert_eq!(read_events(&path)?, ev, "{ext}");
        }
        Ok(())
    }

    /// A column with NaN (not logged) as `None`, comparable with `==`.
    fn logged(p: &Option<Vec<f64>>) -> Option<Vec<Option<f64>>> {
        p.as_ref()
            .map(|v| v.iter().map(|&x| (!x.is_nan()).then_some(x)).collect())
    }

    #[test]
    fn propensities_round_trip_with_nulls_where_not_logged() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut ev = Events::default();
        let base = sample();
        // Rows 0 and 3 explored; the others not logged (null in the file).
        for i in 0..base.len() {
            ev.push(&base.get(i));
            if i == 0 || i == 3 {
                ev.set_last_propensity(if i == 0 { 0.25 } else { 1.0 });
            }
        }
        let want = Some(vec![Some(0.25), None, None, Some(1.0), None]);
        assert_eq!(logged(&ev.propensity), want);
        for ext in ["parquet", "csv", "arrow"] {
            let path = dir.path().join(format!("events.{ext}"));
            write_events(&path, &ev)?;
            let mut back = read_events(&path)?;
            assert_eq!(logged(&back.propensity), want, "{ext}");
            back.propensity = None;
            assert_eq!(back, base, "{ext}");
        }
        // Appending a log without the column pads it with "not logged",
        // and one with it onto one without keeps the rows aligned.
        let mut a = ev.clone();
        a.append(&mut base.clone());
        assert_eq!(a.propensity.as_ref().map(Vec::len), Some(10));
        let mut b = base.clone();
        b.append(&mut ev.clone());
        let p = logged(&b.propensity).unwrap_or_default();
        assert_eq!(p.len(), 10);
        assert_eq!((p[5], p[8], p[0]), (Some(0.25), Some(1.0), None));
        // A log written without the column reads without it.
        let path = dir.path().join("plain.parquet");
        write_events(&path, &base)?;
        assert!(read_events(&path)?.propensity.is_none());
        Ok(())
    }

    #[test]
    fn propensities_outside_zero_one_are_named_with_row() -> TestResult {
        let dir = tempfile::tempdir()?;
        for (bad, row) in [("0", 1), ("1.5", 0), ("-0.2", 1), ("NaN", 0), ("x", 0)] {
            let header = schema::EVENT_COLUMNS.join(",");
            let ok = "0.5";
            let (p0, p1) = if row == 0 { (bad, ok) } else { (ok, bad) };
            let text = format!(
                "{header},propensity\n\
                 1,2,1700000000000,3,4,reels,0,15000,2000,true,false,false,false,{p0}\n\
                 1,2,1700000001000,5,4,reels,1,15000,9000,false,false,false,false,{p1}\n"
            );
            let path = dir.path().join("bad.csv");
            std::fs::write(&path, text)?;
            let msg = read_events(&path).unwrap_err().to_string();
            assert!(msg.contains("propensity"), "{bad}: {msg}");
            if bad != "x" {
                assert!(
                    msg.contains(&format!("row {row}")) && msg.contains("(0, 1]"),
                    "{bad}: {msg}"
                );
            }
        }
        Ok(())
    }

    fn csv_with(dir: &Path, replace: (&str, &str)) -> std::io::Result<std::path::PathBuf> {
        let header = schema::EVENT_COLUMNS.join(",");
        let row = "1,2,1700000000000,3,4,reels,0,15000,2000,true,false,false,false";
        let row2 = "1,2,1700000001000,5,4,reels,1,15000,9000,false,false,false,false";
        let text = format!("{header}\n{row}\n{row2}\n").replace(replace.0, replace.1);
        let path = dir.join("bad.csv");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    #[test]
    fn bad_values_are_named_with_column_and_row() -> TestResult {
        let dir = tempfile::tempdir()?;
        let cases = [
            (
                ("15000,9000", "15000,-9000"),
                "watch_ms",
                "row 1",
                "negative",
            ),
            (("15000,9000", "15000,NaN"), "watch_ms", "row 1", "NaN"),
            (
                ("0,15000,2000", "0,-15000,2000"),
                "duration_ms",
                "row 0",
                "negative",
            ),
            (
                ("0,15000,2000", "0,0,2000"),
                "duration_ms",
                "row 0",
                "positive",
            ),
            (
                (",reels,1,", ",tv,1,"),
                "surface",
                "row 1",
                "unknown surface",
            ),
            (
                ("1,2,1700000001000", ",2,1700000001000"),
                "user_id",
                "row 1",
                "null",
            ),
            (
                ("1,2,1700000001000", "x,2,1700000001000"),
                "user_id",
                "",
                "type",
            ),
        ];
        for ((from, to), column, row, what) in cases {
            let path = csv_with(dir.path(), (from, to))?;
            let msg = read_events(&path).unwrap_err().to_string();
            assert!(
                msg.contains(column) && msg.contains(row) && msg.contains(what),
                "{from}->{to}: {msg}"
            );
            assert!(msg.contains("bad.csv"), "{msg}");
        }
        Ok(())
    }

    #[test]
    fn missing_column_is_named() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = csv_with(dir.path(), ("watch_ms,", "watched,"))?;
        let msg = read_events(&path).unwrap_err().to_string();
        assert!(msg.contains("missing column `watch_ms`"), "{msg}");
        Ok(())
    }
}
