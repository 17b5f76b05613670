//! End-to-end tests across reelkit crates (one test binary).

mod calibrate;
mod experiment;
mod ranker_sim;
mod serve_sim;
mod sim_policies;
