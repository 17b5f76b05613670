//! reelkit-logs: the event schema of a Reels-style feed, readers and writers for
//! Parquet, CSV/TSV and Arrow IPC (chosen by file extension), and validation that
//! names the file, the column, the row and the problem.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use reelkit_logs::{read_events, write_events, Event, Events, Surface};
//!
//! let mut log = Events::default();
//! log.push(&Event {
//!     user_id: 7,
//!     session_id: 1,
//!     ts_ms: 1_700_000_000_000,
//!     video_id: 42,
//!     creator_id: 3,
//!     surface: Surface::Reels,
//!     position: 0,
//!     duration_ms: 15_000,
//!     watch_ms: 12_500,
//!     liked: true,
//!     shared: false,
//!     commented: false,
//!     followed: false,
//! });
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("events.parquet"); // .csv, .tsv and .arrow too
//! write_events(&path, &log)?;
//! let back = read_events(&path)?;
//! assert_eq!((back.len(), back.watch_ms[0]), (1, 12_500));
//! # Ok(()) }
//! ```

mod assignments;
mod columns;
mod delimited;
mod error;
mod events;
mod factors;
mod format;
mod integrity;
mod interactions;
mod io;
pub mod schema;

pub use assignments::{read_assignments, write_assignments, Assignments};
pub use delimited::{Keys, Layout};
pub use error::{Error, Result};
pub use events::{read_events, write_events, Event, Events};
pub use factors::{read_factor_table, FactorTable};
pub use interactions::{read_ids, read_interactions, Ids, InteractionColumns, Interactions};
pub use io::{read_frame, write_atomically, write_frame, Format};
pub use schema::Surface;

/// Files as reelkit reads and writes them: all-or-nothing sets of outputs,
/// capped text reads, frames read with options, columns no reader can type.
pub mod files {
    pub use crate::io::{
        read_frame_with, read_text_capped, unreadable_columns, write_bytes_atomically, FileSet,
        TextOptions, TEXT_CAP,
    };
}

/// Guards around reading untrusted files: sizes a file declares checked
/// against its length, panics inside a reader held as errors, error text
/// without hints meant for Python users.
pub mod guard {
    pub use crate::error::without_python_hints;
    pub use crate::integrity::{check_declared_sizes, hold_panic_report, take_held_panic_reports};
}

/// The polars version this crate reads and writes with, re-exported so callers
/// build frames with the same types.
pub use polars;
