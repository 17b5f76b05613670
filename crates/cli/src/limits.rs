//! One size policy: a count the user gives (users, days, runs, items,
//! impressions) is turned into the memory it needs and checked against what
//! the machine has before any work starts, so a size that cannot fit is a
//! clear refusal with the estimate, not an allocation abort an hour in.

/// Bytes the machine can give a new process now (`MemAvailable`), or 8 GiB
/// where that cannot be read.
fn available_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

fn human(bytes: f64) -> String {
    if bytes >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes / (1u64 << 20) as f64)
    }
}

/// Refuses work estimated at `bytes` when it exceeds nine tenths of the
/// memory available; `what` names the sizes that decided it.
pub fn ensure_fits(what: &str, bytes: f64) -> anyhow::Result<()> {
    let avail = available_bytes() as f64;
    anyhow::ensure!(
        bytes <= 0.9 * avail,
        "{what} needs about {} of memory, and {} is available: ask for less",
        human(bytes),
        human(avail)
    );
    Ok(())
}

/// Memory of a simulation of `users × days` (impressions of about 25 per
/// user and day at ~64 bytes, twice: the log and its frame) and of its world.
pub fn simulation_bytes(users: usize, videos: usize, days: u32) -> f64 {
    users as f64 * days as f64 * 25.0 * 128.0 + (users + videos) as f64 * 1024.0
}
