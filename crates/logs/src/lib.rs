//! reelkit-logs: the event schema of a Reels-style feed, readers and writers for
//! Parquet, CSV/TSV and Arrow IPC (chosen by file extension), and validation that
//! names the file, the column, the row and the problem.
//!
//! ```no_run
//! # fn main() -> reelkit_logs::Result<()> {
//! let events = reelkit_logs::read_events(std::path::Path::new("datasets/sample/events.parquet"))?;
//! println!("{} impressions", events.len());
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
pub use error::{without_python_hints, Error, Result};
pub use events::{read_events, write_events, Event, Events};
pub use factors::{read_factor_table, FactorTable};
pub use integrity::{check_declared_sizes, hold_panic_report, take_held_panic_reports};
pub use interactions::{read_ids, read_interactions, Ids, InteractionColumns, Interactions};
pub use io::{
    read_frame, read_frame_with, read_text_capped, unreadable_columns, write_atomically,
    write_bytes_atomically, write_frame, FileSet, Format, TextOptions, TEXT_CAP,
};
pub use schema::Surface;

/// The polars version this crate reads and writes with, re-exported so callers
/// build frames with the same types.
pub use polars;
