//! End-to-end tests across reelkit crates (one test binary).

mod sim_policies;
