//! File formats chosen by extension, and atomic writes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
pub use crate::format::Format;
use crate::integrity::guarded;

/// Options for delimited text files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextOptions {
    /// Field separator; `None` means `,` for `.csv` and tab for `.tsv`.
    pub separator: Option<u8>,
    /// Whether the first line is a header. Without one, polars names the
    /// columns `column_1`, `column_2`, ...
    pub has_header: bool,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            separator: None,
            has_header: true,
        }
    }
}

/// Reads a whole table, choosing the reader from the extension.
pub fn read_frame(path: &Path) -> Result<DataFrame> {
    read_frame_with(path, &TextOptions::default())
}

/// Whether this build of polars can hold a column of Arrow type `dt`. It is
/// built without the 8- and 16-bit integer, date/time, decimal, categorical,
/// struct and fixed-size-list types, and panics on a file holding one, so
/// such columns are never handed to it.
fn readable(dt: &ArrowDataType) -> bool {
    use ArrowDataType as A;
    match dt {
        A::Null
        | A::Boolean
        | A::Int32
        | A::Int64
        | A::UInt32
        | A::UInt64
        | A::Float32
        | A::Float64
        | A::Utf8
        | A::LargeUtf8
        | A::Utf8View
        | A::Binary
        | A::LargeBinary
        | A::BinaryView => true,
        A::List(f) | A::LargeList(f) => readable(&f.dtype),
        _ => false,
    }
}

/// A short name for an Arrow type (its `Debug` spells out whole fields).
fn type_name(dt: &ArrowDataType) -> String {
    use ArrowDataType as A;
    match dt {
        A::FixedSizeList(f, n) => format!("FixedSizeList<{}; {n}>", type_name(&f.dtype)),
        A::List(f) | A::LargeList(f) => format!("List<{}>", type_name(&f.dtype)),
        A::Struct(_) => "Struct".into(),
        A::Map(..) => "Map".into(),
        A::Dictionary(..) => "Dictionary".into(),
        A::Extension(_) => "Extension".into(),
        other => format!("{other:?}"),
    }
}

/// The columns of a Parquet or Arrow IPC schema reelkit cannot read, as
/// `(name, type)`, and the indices of those it can.
fn split_readable(schema: &ArrowSchema) -> (Vec<usize>, Vec<(String, String)>) {
    let mut keep = Vec::new();
    let mut skip = Vec::new();
    for (i, f) in schema.iter_values().enumerate() {
        if readable(&f.dtype) {
            keep.push(i);
        } else {
            skip.push((f.name.to_string(), type_name(&f.dtype)));
        }
    }
    (keep, skip)
}

/// The projection that leaves out the columns of `schema` reelkit cannot
/// read, after warning about them; `None` (every column) when there is none.
fn readable_projection(path: &Path, schema: &ArrowSchema) -> Option<Vec<usize>> {
    let (keep, skip) = split_readable(schema);
    if skip.is_empty() {
        return None;
    }
    warn_unreadable(path, &skip);
    Some(keep)
}

/// Says which columns are left out and why (they are never read).
fn warn_unreadable(path: &Path, skip: &[(String, String)]) {
    for (name, ty) in skip {
        tracing::warn!(
            "{}: ignoring column `{name}` of type {ty}: reelkit reads 32- and 64-bit \
             integers, floats, booleans and strings; cast the column if it is needed",
            path.display()
        );
    }
}

/// The columns of a Parquet or Arrow IPC file whose type reelkit cannot
/// read, as `(name, type)` (none for CSV/TSV). [`read_frame`] leaves them out
/// with a warning; a lazy scan must not see them at all (polars, as built
/// here, panics on them even unselected).
pub fn unreadable_columns(path: &Path) -> Result<Vec<(String, String)>> {
    let format = Format::from_path(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let pe = |e| Error::polars(path, e);
    let schema = guarded(path, || match format {
        Format::Parquet => ParquetReader::new(file).schema().map_err(pe),
        Format::Ipc => IpcReader::new(file).schema().map_err(pe),
        Format::Csv | Format::Tsv => Ok(Default::default()),
    })?;
    Ok(split_readable(&schema).1)
}

/// Reads a whole table; `text` applies to CSV/TSV files. Parquet and IPC
/// columns of a type reelkit cannot read are left out with a warning (a
/// caller that needs one then reports it missing).
pub fn read_frame_with(path: &Path, text: &TextOptions) -> Result<DataFrame> {
    read_frame_ids(path, text, &[])
}

/// [`read_frame_with`], with the `ids` columns of a CSV/TSV read as
/// unsigned 64-bit integers rather than inferred: ids above `i64::MAX` (which
/// inference would read as signed and fail on) and a header-only file's
/// columns get the type they have in Parquet.
pub(crate) fn read_frame_ids(path: &Path, text: &TextOptions, ids: &[&str]) -> Result<DataFrame> {
    let format = Format::from_path(path)?;
    crate::integrity::check_declared_sizes(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let pe = |e| Error::polars(path, e);
    match format {
        Format::Parquet => guarded(path, || {
            let mut r = ParquetReader::new(file);
            let keep = readable_projection(path, &*r.schema().map_err(pe)?);
            r.with_projection(keep).finish().map_err(pe)
        }),
        Format::Ipc => guarded(path, || {
            let mut r = IpcReader::new(file);
            let keep = readable_projection(path, &*r.schema().map_err(pe)?);
            r.with_projection(keep).finish().map_err(pe)
        }),
        Format::Csv | Format::Tsv => {
            let default_sep = if format == Format::Tsv { b'\t' } else { b',' };
            let sep = text.separator.unwrap_or(default_sep);
            let overwrite = (!ids.is_empty()).then(|| {
                Arc::new(Schema::from_iter(
                    ids.iter()
                        .map(|c| Field::new((*c).into(), DataType::UInt64)),
                ))
            });
            CsvReadOptions::default()
                .with_has_header(text.has_header)
                .with_schema_overwrite(overwrite)
                .with_infer_schema_length(Some(10_000))
                .map_parse_options(|p| p.with_separator(sep))
                .into_reader_with_file_handle(file)
                .finish()
                .map_err(pe)
        }
    }
}

/// Writes `df` to `path` in the format implied by its extension, atomically.
pub fn write_frame(path: &Path, df: &mut DataFrame) -> Result<()> {
    let format = Format::from_path(path)?;
    write_atomically(path, |file| write_frame_to(format, file, df))
}

fn write_frame_to<W: Write>(format: Format, file: W, df: &mut DataFrame) -> std::io::Result<()> {
    let to_io = |e: PolarsError| std::io::Error::other(e);
    match format {
        Format::Parquet => ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(df)
            .map(|_| ())
            .map_err(to_io),
        Format::Ipc => IpcWriter::new(file).finish(df).map_err(to_io),
        Format::Csv | Format::Tsv => {
            let sep = if format == Format::Tsv { b'\t' } else { b',' };
            CsvWriter::new(file)
                .include_header(true)
                .with_separator(sep)
                .finish(df)
                .map_err(to_io)
        }
    }
}

/// Writes a file through `write`, first to a temporary file beside `path`, then
/// renames it into place: a crash or an error never leaves half a file at `path`.
///
/// The temporary file is removed when `write` fails.
pub fn write_atomically<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    let mut set = FileSet::new();
    set.write(path, write)?;
    set.commit()
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| w.write_all(bytes))
}

/// Several files written as one: each goes to a temporary file first, and only
/// [`FileSet::commit`] renames them into place. Dropped without a commit (an
/// error on the way), it removes its temporary files.
#[derive(Debug, Default)]
pub struct FileSet {
    staged: Vec<(PathBuf, PathBuf)>,
}

impl FileSet {
    /// An empty set.
    pub fn new() -> FileSet {
        FileSet::default()
    }

    /// Writes `path`'s future content to a temporary file beside it.
    pub fn write<F>(&mut self, path: &Path, write: F) -> Result<()>
    where
        F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    {
        let tmp = temp_path(path);
        let result = (|| {
            let file = File::create(&tmp)?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            write(&mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()
        })();
        match result {
            Ok(()) => {
                self.staged.push((tmp, path.to_path_buf()));
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(Error::io(path, e))
            }
        }
    }

    /// Writes `bytes` as `path`'s future content.
    pub fn write_bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.write(path, |w| w.write_all(bytes))
    }

    /// Writes a frame in the format implied by `path`'s extension.
    pub fn write_frame(&mut self, path: &Path, df: &mut DataFrame) -> Result<()> {
        let format = Format::from_path(path)?;
        self.write(path, |w| write_frame_to(format, w, df))
    }

    /// Renames every staged file into place. A destination that cannot take a
    /// file (a directory) is found before anything is renamed; should a rename
    /// still fail, the files already renamed by this commit are removed, so the
    /// set is never left half new.
    pub fn commit(mut self) -> Result<()> {
        for (_, path) in &self.staged {
            if path.is_dir() {
                return Err(Error::io(
                    path,
                    std::io::Error::other("is a directory, cannot be replaced by a file"),
                ));
            }
        }
        let staged = std::mem::take(&mut self.staged);
        for (k, (tmp, path)) in staged.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, path) {
                for (_, done) in &staged[..k] {
                    let _ = std::fs::remove_file(done);
                }
                for (rest, _) in &staged[k..] {
                    let _ = std::fs::remove_file(rest);
                }
                return Err(Error::io(path, e));
            }
        }
        Ok(())
    }
}

impl Drop for FileSet {
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The most bytes [`read_text_capped`] reads: far beyond any spec, metrics
/// file, world configuration or token.
pub const TEXT_CAP: u64 = 16 << 20;

/// Reads a small text input (a TOML spec, a metrics file, a token) whole,
/// refusing what is not a regular file (a link to `/dev/zero` would never
/// end) or is larger than `cap` bytes, with an I/O error saying which.
pub fn read_text_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a device, a pipe or a directory)",
        ));
    }
    let mut text = String::new();
    let read = std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_string(&mut text)?;
    if read as u64 > cap {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB: not a text input reelkit reads",
            cap >> 20
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_extensions() {
        assert_eq!(
            Format::from_path(Path::new("a.parquet")).ok(),
            Some(Format::Parquet)
        );
        assert_eq!(
            Format::from_path(Path::new("a.CSV")).ok(),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_path(Path::new("a.feather")).ok(),
            Some(Format::Ipc)
        );
        let err = Format::from_path(Path::new("a.xlsx"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.xlsx") && err.contains("unsupported"),
            "{err}"
        );
    }

    #[test]
    fn failed_write_leaves_nothing() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out.bin");
        let err = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path())?.count(),
            0,
            "no file, no temp file"
        );
        write_bytes_atomically(&path, b"whole")?;
        assert_eq!(std::fs::read(&path)?, b"whole");
        Ok(())
    }

    #[test]
    fn frames_round_trip_in_every_format() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut df = df!("a" => [1u64, 2, 3], "b" => ["x", "y", "z"])?;
        for ext in ["parquet", "csv", "tsv", "arrow"] {
            let path = dir.path().join(format!("t.{ext}"));
            write_frame(&path, &mut df)?;
            let back = read_frame(&path)?;
            assert_eq!(back.height(), 3, "{ext}");
            assert_eq!(
                back.get_column_names_owned(),
                df.get_column_names_owned(),
                "{ext}"
            );
        }
        Ok(())
    }
}
