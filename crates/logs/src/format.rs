//! The tabular file formats reelkit reads and writes, chosen by extension
//! (a leaf: the readers, writers and the size checks all use it).

use std::path::Path;

use crate::error::{Error, Result};

/// A tabular file format, chosen from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.parquet` (zstd-compressed when written).
    Parquet,
    /// `.csv` (comma separated, with a header).
    Csv,
    /// `.tsv` (tab separated, with a header).
    Tsv,
    /// `.arrow`, `.ipc` or `.feather` (Arrow IPC file).
    Ipc,
}

impl Format {
    /// The format implied by `path`'s extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("parquet") | Some("pq") => Ok(Format::Parquet),
            Some("csv") => Ok(Format::Csv),
            Some("tsv") => Ok(Format::Tsv),
            Some("arrow") | Some("ipc") | Some("feather") => Ok(Format::Ipc),
            _ => Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}
