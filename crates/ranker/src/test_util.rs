//! Helpers the crate's tests share.

use crate::als::{EpochReport, TrainControl};
use crate::error::Result;
use crate::factors::Factors;

/// Runs `train` with a control that records every epoch's loss; its result
/// and the losses, in epoch order.
pub(crate) fn with_losses<T>(
    train: impl FnOnce(&mut TrainControl<'_>) -> Result<T>,
) -> Result<(T, Vec<f64>)> {
    let mut losses = Vec::new();
    let mut record = |r: &EpochReport, _: &Factors| {
        losses.push(r.loss);
        true
    };
    let out = train(&mut TrainControl {
        stop: None,
        on_epoch: Some(&mut record),
    })?;
    Ok((out, losses))
}

/// `f` on a pool of `threads` worker threads.
pub(crate) fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}
