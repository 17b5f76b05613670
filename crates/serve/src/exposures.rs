//! The exposure log: every recommendation the service answered, appended to
//! Parquet files by a background thread.
//!
//! One row per response: `user_id` u64, `ts_ms` i64 (Unix milliseconds),
//! `request_id` u64, `experiment` (`single` | `ab` | `interleave`), `variant`
//! (the arm's model; null when interleaving), `surface` (null: none asked),
//! `video_ids` `list<u64>` in the order served, `positions` `list<u32>` (0, 1, …),
//! `teams` `list<string>` (the model that placed each video; null unless
//! interleaving), `model_versions` (`name=version`, comma-separated) and
//! `propensities` `list<f64>` (under `serve --explore`: each video's
//! probability at its position under the exploring policy, what off-policy
//! estimators weigh it by; null otherwise).
//!
//! Files are written as `exposures-<start ms>-<pid>-<seq>.parquet.partial`
//! and renamed to `.parquet` once closed (when they reach the size or age
//! limit, and on shutdown), so a finished file is never half-written: after a
//! crash, only the trailing `.partial` file is lost, and readers skip it.
//! Requests never wait on the log: they hand rows to a bounded queue, and
//! what does not fit is dropped and counted.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    Float64Builder, ListBuilder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Why the exposure log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    /// The directory could not be created.
    #[error("exposure directory {path}: cannot create it")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory exists but files cannot be written in it.
    #[error("exposure directory {path} is not writable")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// Why the probe file could not be written.
        #[source]
        source: std::io::Error,
    },
}

/// Where and how exposures are written.
#[derive(Debug, Clone)]
pub struct ExposureConfig {
    /// The directory of the Parquet files (created if missing).
    pub dir: PathBuf,
    /// A file is closed and a new one started past this many bytes.
    pub max_file_bytes: u64,
    /// … or when it has been open this long: at most this much is lost in a crash.
    pub max_file_age: Duration,
    /// Rows that may wait for the writer; beyond, rows are dropped and counted.
    pub queue: usize,
}

impl ExposureConfig {
    /// Defaults: 64 MiB files, closed at the latest after 60 s, a queue of
    /// 100,000 responses.
    pub fn new(dir: impl Into<PathBuf>) -> ExposureConfig {
        ExposureConfig {
            dir: dir.into(),
            max_file_bytes: 64 << 20,
            max_file_age: Duration::from_secs(60),
            queue: 100_000,
        }
    }
}

/// One served response.
#[derive(Debug, Clone)]
pub(crate) struct Exposure {
    pub user_id: u64,
    pub ts_ms: i64,
    pub request_id: u64,
    pub experiment: &'static str,
    pub variant: Option<String>,
    pub surface: Option<&'static str>,
    pub video_ids: Vec<u64>,
    pub teams: Option<Vec<Arc<str>>>,
    pub model_versions: String,
    pub propensities: Option<Vec<f64>>,
}

#[derive(Debug, Default)]
struct Counters {
    logged: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    files: AtomicU64,
}

/// The log's queue and writer thread. Closing it ([`ExposureLog::close`], or
/// dropping it) writes what is queued and closes the open file.
#[derive(Debug)]
pub struct ExposureLog {
    tx: Mutex<Option<SyncSender<Exposure>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

fn schema() -> Arc<Schema> {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::UInt64, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("request_id", DataType::UInt64, false),
        Field::new("experiment", DataType::Utf8, false),
        Field::new("variant", DataType::Utf8, true),
        Field::new("surface", DataType::Utf8, true),
        Field::new("video_ids", list(DataType::UInt64), false),
        Field::new("positions", list(DataType::UInt32), false),
        Field::new("teams", list(DataType::Utf8), true),
        Field::new("model_versions", DataType::Utf8, false),
        Field::new("propensities", list(DataType::Float64), true),
    ]))
}

fn batch(rows: &[Exposure], schema: &Arc<Schema>) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut videos = ListBuilder::new(UInt64Builder::new());
    let mut positions = ListBuilder::new(UInt32Builder::new());
    let mut teams = ListBuilder::new(StringBuilder::new());
    let mut propensities = ListBuilder::new(Float64Builder::new());
    for r in rows {
        match &r.propensities {
            Some(p) => {
                propensities.values().append_slice(p);
                propensities.append(true);
            }
            None => propensities.append(false),
        }
        videos.values().append_slice(&r.video_ids);
        videos.append(true);
        for p in 0..r.video_ids.len() as u32 {
            positions.values().append_value(p);
        }
        positions.append(true);
        match &r.teams {
            Some(t) => {
                for team in t {
                    teams.values().append_value(team);
                }
                teams.append(true);
            }
            None => teams.append(false),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.user_id),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts_ms))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.request_id),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.experiment),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.variant.as_deref()),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.surface))),
        Arc::new(videos.finish()),
        Arc::new(positions.finish()),
        Arc::new(teams.finish()),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.model_versions.as_str()),
        )),
        Arc::new(propensities.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// The file being written.
struct Open {
    writer: ArrowWriter<File>,
    partial: PathBuf,
    done: PathBuf,
    opened: Instant,
}

/// The writer thread's state.
struct Writer {
    config: ExposureConfig,
    schema: Arc<Schema>,
    counters: Arc<Counters>,
    stem: String,
    seq: u64,
    open: Option<Open>,
}

impl Writer {
    fn open_file(&mut self) -> std::io::Result<&mut Open> {
        if self.open.is_none() {
            self.seq += 1;
            let name = format!("{}-{:06}.parquet", self.stem, self.seq);
            let done = self.config.dir.join(&name);
            let partial = self.config.dir.join(format!("{name}.partial"));
            let file = File::create(&partial)?;
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(65_536))
                .build();
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(props))
                .map_err(std::io::Error::other)?;
            self.open = Some(Open {
                writer,
                partial,
                done,
                opened: Instant::now(),
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    fn write(&mut self, rows: &mut Vec<Exposure>) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        let result = batch(rows, &self.schema)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                let open = self.open_file()?;
                open.writer.write(&b).map_err(std::io::Error::other)
            });
        rows.clear();
        match result {
            Ok(()) => {
                self.counters.logged.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!("exposure log: {n} rows lost: {e}");
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                // Start afresh: the broken file is left as .partial.
                self.open = None;
            }
        }
    }

    fn rotate_if_due(&mut self) {
        let due = self.open.as_ref().is_some_and(|o| {
            o.writer.bytes_written() as u64 + o.writer.in_progress_size() as u64
                >= self.config.max_file_bytes
                || o.opened.elapsed() >= self.config.max_file_age
        });
        if due {
            self.close_file();
        }
    }

    fn close_file(&mut self) {
        let Some(open) = self.open.take() else { return };
        let result = open
            .writer
            .into_inner()
            .map_err(std::io::Error::other)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&open.partial, &open.done));
        match result {
            Ok(()) => {
                self.counters.files.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!("exposure log: closing {}: {e}", open.partial.display());
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn run(mut self, rx: Receiver<Exposure>) {
        const BATCH: usize = 4_096;
        let mut rows = Vec::with_capacity(BATCH);
        let mut last_write = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(e) => {
                    rows.push(e);
                    while rows.len() < BATCH {
                        match rx.try_recv() {
                            Ok(e) => rows.push(e),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if rows.len() >= BATCH || last_write.elapsed() >= Duration::from_secs(1) {
                self.write(&mut rows);
                last_write = Instant::now();
            }
            self.rotate_if_due();
        }
        self.write(&mut rows);
        self.close_file();
    }
}

impl ExposureLog {
    /// Creates the directory if needed, checks that it is writable and starts
    /// the writer thread.
    pub fn open(config: ExposureConfig) -> Result<ExposureLog, ExposureError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ExposureError::Create {
            path: dir.clone(),
            source,
        })?;
        let probe = dir.join(format!(".reelkit-write-probe-{}", std::process::id()));
        File::create(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|source| ExposureError::NotWritable {
                path: dir.clone(),
                source,
            })?;
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = sync_channel(config.queue.max(1));
        let writer = Writer {
            stem: format!("exposures-{started_ms:013}-{}", std::process::id()),
            config,
            schema: schema(),
            counters: counters.clone(),
            seq: 0,
            open: None,
        };
        let handle = std::thread::Builder::new()
            .name("reelkit-exposures".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| ExposureError::NotWritable {
                path: dir.clone(),
                source,
            })?;
        Ok(ExposureLog {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            counters,
        })
    }

    /// Queues one response; never waits (a full queue drops it and counts it).
    pub(crate) fn log(&self, e: Exposure) {
        let g = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match g.as_ref() {
            Some(tx) => match tx.try_send(e) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything queued, closes the open file and stops the writer.
    /// Later responses are dropped (and counted).
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// Responses written to files so far.
    pub fn logged(&self) -> u64 {
        self.counters.logged.load(Ordering::Relaxed)
    }

    /// Responses dropped (queue full, write errors, or after close).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Write or close errors so far.
    pub fn errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Files closed so far.
    pub fn files(&self) -> u64 {
        self.counters.files.load(Ordering::Relaxed)
    }
}

impl Drop for ExposureLog {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn exposure(i: u64) -> Exposure {
        Exposure {
            user_id: i % 97,
            ts_ms: i as i64,
            request_id: i,
            experiment: "ab",
            variant: Some("control".into()),
            surface: None,
            video_ids: vec![i, i + 1, i + 2],
            teams: None,
            model_versions: "control=v1".into(),
            propensities: i.is_multiple_of(2).then(|| vec![0.9, 0.001, 0.9]),
        }
    }

    fn rows_in(dir: &Path) -> (usize, usize, usize) {
        let (mut files, mut partial, mut rows) = (0, 0, 0);
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "parquet") {
                files += 1;
                let r =
                    parquet::file::reader::SerializedFileReader::new(File::open(&p).expect("open"))
                        .expect("a whole parquet file");
                use parquet::file::reader::FileReader;
                rows += r.metadata().file_metadata().num_rows() as usize;
            } else {
                partial += 1;
            }
        }
        (files, partial, rows)
    }

    #[test]
    fn files_rotate_by_size_and_close_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExposureLog::open(ExposureConfig {
            max_file_bytes: 1,
            ..ExposureConfig::new(dir.path())
        })
        .expect("open");
        let n = 20_000;
        for i in 0..n {
            log.log(exposure(i));
            if i % 5_000 == 4_999 {
                // Let the writer drain, so that the batches land in several files.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        log.close();
        let (files, partial, rows) = rows_in(dir.path());
        assert_eq!(partial, 0, "every file closed whole");
        assert!(files >= 2, "{files} files");
        assert_eq!(rows as u64 + log.dropped(), n);
        assert_eq!(log.logged(), rows as u64);
        assert_eq!(log.files(), files as u64);
        // After close, rows are counted as dropped, never written half.
        log.log(exposure(1));
        assert_eq!(log.dropped(), n - rows as u64 + 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ExposureLog::open(ExposureConfig {
            queue: 1,
            ..ExposureConfig::new(dir.path())
        })
        .expect("open");
        let n = 50_000;
        for i in 0..n {
            log.log(exposure(i));
        }
        log.close();
        let (_, partial, rows) = rows_in(dir.path());
        assert_eq!(partial, 0);
        assert!(log.dropped() > 0, "a queue of one must overflow");
        assert_eq!(
            rows as u64 + log.dropped(),
            n,
            "every row written or counted"
        );
    }
}
