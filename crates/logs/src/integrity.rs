//! Checks the sizes a Parquet or Arrow IPC file declares before polars reads
//! it. polars trusts them: a corrupted page header that claims 2^61 values,
//! or an IPC buffer that claims 2^57 decompressed bytes, makes it ask the
//! allocator for that much, and a failed allocation aborts the process (it
//! cannot be caught). Every count is checked here against the file's own
//! structure (a page against its column chunk, a chunk against its row group,
//! a buffer against its record batch) and every decoded size against the
//! machine's memory, so such a file is an error naming what is wrong.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use fb::planus::ReadAsRoot;
use polars_arrow::io::ipc::format::ipc as fb;
use polars_parquet::parquet::read::read_metadata;
use polars_parquet_format::thrift::protocol::TCompactInputProtocol;
use polars_parquet_format::{PageHeader, PageType};

use crate::error::{Error, Result};
use crate::format::Format;

/// Guarded reads in progress, in any thread.
static GUARDED: AtomicUsize = AtomicUsize::new(0);

/// Panic reports held back while guarded reads ran: `(message, report)`.
static HELD: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<(String, String)>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// For a panic hook. polars panics on some corrupt files (an unknown type id
/// in an IPC schema), in whichever of its threads decodes them, and this
/// crate's readers turn such a panic into [`Error::Unreadable`]. While a
/// guarded read runs, a hook passes each panic's `message` and the `report`
/// it would print here: the report is held back (returns `true`; the hook
/// prints nothing), the read that catches a panic with that message drops
/// it, and [`take_held_panic_reports`] returns the others — panics no read
/// explained, which are bugs to report. Returns `false` (print it now) when
/// no guarded read is running.
pub fn hold_panic_report(message: &str, report: String) -> bool {
    if GUARDED.load(Ordering::SeqCst) == 0 {
        return false;
    }
    held().push((message.to_string(), report));
    true
}

/// The held panic reports that no guarded read explained (see
/// [`hold_panic_report`]), oldest first; emptied. A program calls it before
/// it exits and when it is told a panic happened, and prints them.
pub fn take_held_panic_reports() -> Vec<String> {
    let mut h = held();
    if GUARDED.load(Ordering::SeqCst) > 0 {
        // Reads still running may yet explain theirs: keep those that could be.
        return Vec::new();
    }
    h.drain(..).map(|(_, r)| r).collect()
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown failure".into())
}

/// Runs a polars read of `path`; a panic inside it (polars on a corrupt
/// file) becomes [`Error::Unreadable`] carrying polars' message.
pub(crate) fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    GUARDED.fetch_add(1, Ordering::SeqCst);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    let out = out.map_err(|payload| {
        let msg = panic_message(payload.as_ref());
        // This read explains one held report with its message: drop it.
        let mut h = held();
        if let Some(at) = h.iter().position(|(m, _)| *m == msg) {
            h.remove(at);
        }
        msg
    });
    GUARDED.fetch_sub(1, Ordering::SeqCst);
    out.unwrap_or_else(|msg| {
        Err(Error::Unreadable {
            path: path.to_path_buf(),
            what: msg,
        })
    })
}

/// Checks `path` (Parquet or Arrow IPC; other formats pass) before polars
/// reads it: every declared count and length fits the file and every decoded
/// size fits in this machine's memory. Called by every reader in this crate;
/// public for callers that hand a file to polars themselves (a lazy scan).
pub fn check_declared_sizes(path: &Path) -> Result<()> {
    let format = Format::from_path(path)?;
    if !matches!(format, Format::Parquet | Format::Ipc) {
        return Ok(());
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = BufReader::with_capacity(4 << 10, file);
    let limit = Limits {
        file_len: len,
        memory: memory_bytes(),
    };
    guarded(path, || {
        let outcome = match format {
            Format::Parquet => parquet(&mut r, &limit),
            _ => ipc(&mut r, &limit),
        };
        outcome.map_err(|what| Error::Corrupt {
            path: path.to_path_buf(),
            what,
        })
    })
}

/// What a declared size is checked against.
struct Limits {
    file_len: u64,
    /// Bytes of memory in this machine: a column that decodes to more could
    /// not be read anyway.
    memory: u64,
}

impl Limits {
    fn decoded(&self, what: &str, bytes: u128) -> Result<(), String> {
        if bytes > self.memory as u128 {
            return Err(format!(
                "{what} declares {} of decoded data, more than this machine's {} of memory \
                 (the file is corrupt, or too large to read at once)",
                gib(bytes),
                gib(self.memory as u128)
            ));
        }
        Ok(())
    }
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Total memory from `/proc/meminfo`, or 1 TiB where it cannot be read.
fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(1 << 40)
}

/// The most bytes one Thrift page header may take.
const MAX_HEADER: usize = 1 << 20;

fn parquet<R: Read + Seek>(r: &mut R, limit: &Limits) -> Result<(), String> {
    // polars' own footer reader: it checks the footer against the file.
    let meta = read_metadata(r)
        .map_err(|e| format!("truncated or not Parquet (unreadable footer: {e})"))?;
    let leaves = meta.schema_descr.columns().len().max(1) as u128;
    let rows: u128 = meta.row_groups.iter().map(|g| g.num_rows() as u128).sum();
    // Every value decodes to at least a byte (and a validity bit).
    limit.decoded("the footer", rows * leaves)?;
    for (g, group) in meta.row_groups.iter().enumerate() {
        let group_rows = group.num_rows() as i64;
        for chunk in group.parquet_columns() {
            let d = chunk.descriptor();
            let name = d.path_in_schema.join(".");
            let at = || format!("row group {g}, column `{name}`");
            let declared = chunk.num_values();
            let flat = d.descriptor.max_rep_level == 0;
            if declared < 0 || (flat && declared > group_rows) {
                return Err(format!(
                    "{}: {declared} values in a row group of {group_rows} rows",
                    at()
                ));
            }
            let range = chunk.byte_range();
            if range.start > range.end || range.end > limit.file_len {
                return Err(format!(
                    "{}: bytes {}..{} lie outside the file ({} bytes)",
                    at(),
                    range.start,
                    range.end,
                    limit.file_len
                ));
            }
            pages(r, range, declared, limit).map_err(|e| format!("{}: {e}", at()))?;
        }
    }
    Ok(())
}

/// Walks a column chunk's page headers as polars will: every page inside
/// the chunk, its values within what the chunk declares, its sizes sane.
fn pages<R: Read + Seek>(
    r: &mut R,
    range: std::ops::Range<u64>,
    declared: i64,
    limit: &Limits,
) -> Result<(), String> {
    let mut pos = range.start;
    let mut seen: i64 = 0;
    let mut first = true;
    while seen < declared {
        if pos >= range.end {
            return Err(format!(
                "its pages hold {seen} values, the chunk declares {declared}"
            ));
        }
        r.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
        let mut counted = CountingReader {
            inner: &mut *r,
            n: 0,
        };
        let header = {
            let mut prot = TCompactInputProtocol::new(&mut counted, MAX_HEADER);
            PageHeader::read_from_in_protocol(&mut prot)
                .map_err(|e| format!("page header at byte {pos}: {e}"))?
        };
        let body = u64::try_from(header.compressed_page_size)
            .map_err(|_| format!("page at byte {pos}: negative compressed size"))?;
        let plain = u64::try_from(header.uncompressed_page_size)
            .map_err(|_| format!("page at byte {pos}: negative uncompressed size"))?;
        let end = pos + counted.n + body;
        if end > range.end {
            return Err(format!(
                "page at byte {pos} ends at byte {end}, past its chunk's end {}",
                range.end
            ));
        }
        limit.decoded(&format!("page at byte {pos}"), plain as u128)?;
        let values = match header.type_ {
            PageType::DATA_PAGE => header.data_page_header.as_ref().map(|h| h.num_values),
            PageType::DATA_PAGE_V2 => header.data_page_header_v2.as_ref().map(|h| {
                if h.num_nulls < 0 || h.num_nulls > h.num_values || h.num_rows < 0 {
                    -1
                } else {
                    h.num_values
                }
            }),
            PageType::DICTIONARY_PAGE if first => {
                let n = header.dictionary_page_header.as_ref().map(|h| h.num_values);
                // A dictionary entry takes at least a bit of its page.
                if let Some(n) = n {
                    if n < 0 || n as u128 > plain as u128 * 8 + 8 {
                        return Err(format!(
                            "dictionary page at byte {pos}: {n} entries in {plain} bytes"
                        ));
                    }
                }
                n.map(|_| 0)
            }
            _ => Some(0),
        };
        let values = values.ok_or_else(|| format!("page at byte {pos}: header lacks its kind"))?;
        if values < 0 || values as i64 > declared - seen {
            return Err(format!(
                "page at byte {pos} declares {values} values, {} are left in the chunk",
                declared - seen
            ));
        }
        seen += values as i64;
        pos = end;
        first = false;
    }
    Ok(())
}

/// Counts the bytes a Thrift header takes.
struct CountingReader<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// IPC: every block inside the file, every record batch's buffers inside
/// its body, row counts and decompressed lengths within memory.
fn ipc<R: Read + Seek>(r: &mut R, limit: &Limits) -> Result<(), String> {
    let meta = polars_arrow::io::ipc::read::read_file_metadata(r)
        .map_err(|e| format!("truncated or not Arrow IPC (unreadable footer: {e})"))?;
    let columns = meta.schema.len().max(1) as u128;
    let mut blocks: Vec<(&str, usize, &fb::Block)> = meta
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| ("record batch", i, b))
        .collect();
    if let Some(d) = &meta.dictionaries {
        blocks.extend(
            d.iter()
                .enumerate()
                .map(|(i, b)| ("dictionary batch", i, b)),
        );
    }
    let mut rows: u128 = 0;
    let mut scratch = Vec::new();
    for (kind, i, block) in blocks {
        let at = || format!("{kind} {i}");
        let (Ok(offset), Ok(meta_len), Ok(body_len)) = (
            u64::try_from(block.offset),
            u64::try_from(block.meta_data_length),
            u64::try_from(block.body_length),
        ) else {
            return Err(format!("{}: negative offset or length", at()));
        };
        let end = offset as u128 + meta_len as u128 + body_len as u128;
        if end > limit.file_len as u128 || meta_len < 4 {
            return Err(format!(
                "{}: bytes {offset}..{end} lie outside the file ({} bytes)",
                at(),
                limit.file_len
            ));
        }
        r.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        let mut word = [0u8; 4];
        r.read_exact(&mut word)
            .map_err(|e| format!("{}: {e}", at()))?;
        if word == [0xff; 4] {
            r.read_exact(&mut word)
                .map_err(|e| format!("{}: {e}", at()))?;
        }
        let msg_len = i32::from_le_bytes(word);
        if msg_len < 0 || msg_len as u64 > meta_len {
            return Err(format!(
                "{}: message of {msg_len} bytes in a {meta_len}-byte block header",
                at()
            ));
        }
        scratch.clear();
        scratch.resize(msg_len as usize, 0);
        r.read_exact(&mut scratch)
            .map_err(|e| format!("{}: {e}", at()))?;
        let message = fb::MessageRef::read_as_root(&scratch)
            .map_err(|e| format!("{}: unreadable message: {e}", at()))?;
        let header = message
            .header()
            .map_err(|e| format!("{}: unreadable message: {e}", at()))?;
        let batch = match header {
            Some(fb::MessageHeaderRef::RecordBatch(b)) => b,
            Some(fb::MessageHeaderRef::DictionaryBatch(d)) => match d.data() {
                Ok(Some(b)) => b,
                _ => return Err(format!("{}: dictionary batch without data", at())),
            },
            _ => return Err(format!("{}: not a record batch", at())),
        };
        let bad = |e| format!("{}: unreadable record batch: {e}", at());
        let length = batch.length().map_err(bad)?;
        if length < 0 {
            return Err(format!("{}: negative row count {length}", at()));
        }
        if kind == "record batch" {
            rows += length as u128;
            limit.decoded("the record batches", rows * columns)?;
        }
        if let Some(nodes) = batch.nodes().map_err(bad)? {
            for node in nodes {
                let n = node.length();
                if n < 0 || node.null_count() < 0 || node.null_count() > n {
                    return Err(format!("{}: a column declares {n} values", at()));
                }
                limit.decoded(&at(), n as u128)?;
            }
        }
        let compressed = batch.compression().map_err(bad)?.is_some();
        let body_start = offset + meta_len;
        if let Some(buffers) = batch.buffers().map_err(bad)? {
            for buf in buffers {
                let (Ok(o), Ok(l)) = (u64::try_from(buf.offset()), u64::try_from(buf.length()))
                else {
                    return Err(format!(
                        "{}: a buffer has a negative offset or length",
                        at()
                    ));
                };
                if o as u128 + l as u128 > body_len as u128 {
                    return Err(format!(
                        "{}: buffer at {o}..{} lies outside the {body_len}-byte body",
                        at(),
                        o as u128 + l as u128
                    ));
                }
                if compressed && l >= 8 {
                    r.seek(SeekFrom::Start(body_start + o))
                        .map_err(|e| e.to_string())?;
                    let mut w = [0u8; 8];
                    r.read_exact(&mut w).map_err(|e| format!("{}: {e}", at()))?;
                    let plain = i64::from_le_bytes(w);
                    if plain < -1 {
                        return Err(format!(
                            "{}: a buffer declares {plain} decompressed bytes",
                            at()
                        ));
                    }
                    limit.decoded(&at(), plain.max(0) as u128)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;
    use polars_parquet_format::thrift::protocol::TCompactOutputProtocol;

    type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;
    /// A file's bytes, a data page header's position, the header, its length.
    type WithPage = (Vec<u8>, u64, PageHeader, u64);

    fn frame(n: usize) -> DataFrame {
        let ids: Vec<i64> = (0..n as i64).map(|i| i * 7919 % 1000).collect();
        df!("user_id" => ids).expect("a one-column frame")
    }

    /// A valid uncompressed Parquet file of one Int64 column and the
    /// position and length of its first data page header.
    fn parquet_with_page(dir: &Path) -> TestResult<WithPage> {
        let path = dir.join("ok.parquet");
        ParquetWriter::new(File::create(&path)?)
            .with_compression(ParquetCompression::Uncompressed)
            .finish(&mut frame(100))?;
        let bytes = std::fs::read(&path)?;
        let mut c = std::io::Cursor::new(&bytes);
        let meta = read_metadata(&mut c)?;
        let mut pos = meta.row_groups[0].parquet_columns()[0].byte_range().start;
        loop {
            let mut rest = &bytes[pos as usize..];
            let before = rest.len();
            let mut prot = TCompactInputProtocol::new(&mut rest, MAX_HEADER);
            let h = PageHeader::read_from_in_protocol(&mut prot)?;
            let used = (before - rest.len()) as u64;
            if h.type_ == PageType::DATA_PAGE || h.type_ == PageType::DATA_PAGE_V2 {
                return Ok((bytes, pos, h, used));
            }
            pos += used + h.compressed_page_size as u64;
        }
    }

    fn encode(h: &PageHeader) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prot = TCompactOutputProtocol::new(&mut out);
        h.write_to_out_protocol(&mut prot)
            .expect("a page header encodes");
        out
    }

    #[test]
    fn a_valid_parquet_file_passes_and_reads() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (bytes, _, _, _) = parquet_with_page(dir.path())?;
        let p = dir.path().join("copy.parquet");
        std::fs::write(&p, bytes)?;
        check_declared_sizes(&p)?;
        assert_eq!(crate::read_frame(&p)?.height(), 100);
        Ok(())
    }

    #[test]
    fn a_page_claiming_more_values_than_its_chunk_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut bytes, pos, mut h, used) = parquet_with_page(dir.path())?;
        // A count of the same encoded length, far beyond the chunk's 100.
        let set = |h: &mut PageHeader, n: i32| match h.data_page_header.as_mut() {
            Some(d) => d.num_values = n,
            None => {
                h.data_page_header_v2
                    .as_mut()
                    .expect("a data page")
                    .num_values = n
            }
        };
        set(&mut h, 8000);
        let enc = encode(&h);
        assert_eq!(
            enc.len() as u64,
            used,
            "the patched header keeps its length"
        );
        bytes[pos as usize..(pos + used) as usize].copy_from_slice(&enc);
        let p = dir.path().join("bad.parquet");
        std::fs::write(&p, &bytes)?;
        let err = crate::read_frame(&p).expect_err("a corrupt page");
        let msg = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("bad.parquet") && msg.contains("`user_id`"),
            "{msg}"
        );
        assert!(msg.contains("declares 8000 values, 100 are left"), "{msg}");
        Ok(())
    }

    #[test]
    fn a_page_running_past_its_chunk_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut bytes, pos, mut h, used) = parquet_with_page(dir.path())?;
        h.compressed_page_size += 1000;
        h.uncompressed_page_size += 1000;
        let enc = encode(&h);
        assert_eq!(enc.len() as u64, used);
        bytes[pos as usize..(pos + used) as usize].copy_from_slice(&enc);
        let p = dir.path().join("long.parquet");
        std::fs::write(&p, &bytes)?;
        let msg = check_declared_sizes(&p)
            .expect_err("a page past its chunk")
            .to_string();
        assert!(msg.contains("past its chunk's end"), "{msg}");
        Ok(())
    }

    /// Where the 16-byte (offset, length) of an IPC record batch buffer
    /// with a non-zero length sits, and the body's length.
    fn ipc_buffer(bytes: &[u8]) -> TestResult<(usize, u64)> {
        let meta =
            polars_arrow::io::ipc::read::read_file_metadata(&mut std::io::Cursor::new(bytes))?;
        let b = meta.blocks[0];
        let start = b.offset as usize;
        let end = start + b.meta_data_length as usize;
        let skip = if bytes[start..start + 4] == [0xff; 4] {
            8
        } else {
            4
        };
        let message = fb::MessageRef::read_as_root(&bytes[start + skip..end])?;
        let Some(fb::MessageHeaderRef::RecordBatch(batch)) = message.header()? else {
            return Err("no record batch".into());
        };
        let buf = batch
            .buffers()?
            .ok_or("no buffers")?
            .iter()
            .find(|b| b.length() > 0)
            .ok_or("no data buffer")?;
        let mut pattern = buf.offset().to_le_bytes().to_vec();
        pattern.extend(buf.length().to_le_bytes());
        let at = bytes[start..end]
            .windows(16)
            .position(|w| w == pattern.as_slice())
            .ok_or("buffer not found")?;
        Ok((start + at, b.body_length as u64))
    }

    #[test]
    fn an_ipc_buffer_claiming_2_pow_57_bytes_is_refused_not_allocated() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ok.arrow");
        IpcWriter::new(File::create(&path)?).finish(&mut frame(50))?;
        let mut bytes = std::fs::read(&path)?;
        let (at, body) = ipc_buffer(&bytes)?;
        bytes[at + 8..at + 16].copy_from_slice(&(1i64 << 57).to_le_bytes());
        let p = dir.path().join("huge.arrow");
        std::fs::write(&p, &bytes)?;
        // Before the check, polars asked the allocator for 2^57 bytes here
        // and the process aborted.
        let msg = crate::read_frame(&p)
            .expect_err("a corrupt buffer")
            .to_string();
        assert!(
            msg.contains("huge.arrow") && msg.contains("corrupt file"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("outside the {body}-byte body")),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn decoded_sizes_beyond_memory_are_refused() {
        let l = Limits {
            file_len: 100,
            memory: 1 << 30,
        };
        assert!(l.decoded("x", 1 << 30).is_ok());
        let msg = l.decoded("the footer", (1 << 30) + 1).expect_err("too big");
        assert!(
            msg.contains("the footer declares 1.0 GiB") && msg.contains("1.0 GiB of memory"),
            "{msg}"
        );
    }

    /// Both panic tests share the process-wide hook and hold list.
    static HOOK: Mutex<()> = Mutex::new(());

    /// A hook as the CLI's: held back while guarded reads run, else "printed"
    /// (collected in `printed`).
    fn with_hook<R>(printed: &'static Mutex<Vec<String>>, f: impl FnOnce() -> R) -> R {
        let _one = HOOK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_message(info.payload());
            if !hold_panic_report(&msg, format!("bug: {msg}")) {
                printed.lock().unwrap().push(format!("bug: {msg}"));
            }
        }));
        let r = f();
        std::panic::set_hook(before);
        r
    }

    #[test]
    fn a_panic_inside_a_guarded_read_is_an_error_and_quiet() {
        static PRINTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let p = Path::new("x.parquet");
        let r: Result<()> = with_hook(&PRINTED, || {
            guarded(p, || {
                assert!(GUARDED.load(Ordering::SeqCst) > 0);
                panic!("thrift bool field")
            })
        });
        let msg = r.expect_err("the panic is an error").to_string();
        assert!(
            msg.contains("x.parquet") && msg.contains("thrift bool field"),
            "{msg}"
        );
        assert!(PRINTED.lock().unwrap().is_empty());
        assert!(take_held_panic_reports().is_empty());
    }

    #[test]
    fn a_bug_elsewhere_during_a_guarded_read_is_reported_not_hidden() {
        static PRINTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let reports = with_hook(&PRINTED, || {
            let (started, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
            std::thread::scope(|s| {
                let read = s.spawn(|| {
                    guarded(Path::new("y.arrow"), || {
                        started.wait();
                        go.wait();
                        Ok(())
                    })
                });
                started.wait();
                // Another thread's bug while the read runs: held, not lost.
                let bug = s.spawn(|| panic!("index out of bounds"));
                assert!(bug.join().is_err());
                assert!(
                    take_held_panic_reports().is_empty(),
                    "a read is still running"
                );
                go.wait();
                read.join().expect("read thread").expect("read ok");
            });
            take_held_panic_reports()
        });
        assert_eq!(reports, vec!["bug: index out of bounds".to_string()]);
        assert!(PRINTED.lock().unwrap().is_empty());
        // With no read running the hook prints at once.
        with_hook(&PRINTED, || {
            assert!(std::thread::spawn(|| panic!("later")).join().is_err());
        });
        assert_eq!(*PRINTED.lock().unwrap(), vec!["bug: later".to_string()]);
    }
}
