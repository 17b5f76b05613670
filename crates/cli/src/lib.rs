//! The `reelkit` crate's library part: glue that needs more than one reelkit
//! crate, shared by the binary and the end-to-end tests.

mod ranker_policy;

pub use ranker_policy::RankerPolicy;
