//! One size policy: a count the user gives (users, days, runs, items,
//! impressions) is turned into the memory it needs and checked against what
//! the machine has before any work starts, so a size that cannot fit is a
//! clear refusal with the estimate, not an allocation abort an hour in.

/// Bytes this process may still allocate: the least of the machine's
/// `MemAvailable`, a cgroup's memory limit less its usage (a container), and
/// the address-space limit (`ulimit -v`) less the address space already
/// mapped; 8 GiB where none can be read.
fn available_bytes() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    // `Key:   123 kB` lines of /proc files.
    let kib = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|k| k.saturating_mul(1024))
    };
    let machine = read("/proc/meminfo").and_then(|t| kib(&t, "MemAvailable:"));
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .and_then(|m| m.trim().parse::<u64>().ok())
        .map(|max| {
            let used = read("/sys/fs/cgroup/memory.current")
                .and_then(|u| u.trim().parse::<u64>().ok())
                .unwrap_or(0);
            max.saturating_sub(used)
        });
    let address_space = read("/proc/self/limits").and_then(|t| {
        // `Max address space   <soft>   <hard>   bytes`
        let soft = t
            .lines()
            .find(|l| l.starts_with("Max address space"))?
            .split_whitespace()
            .nth(3)?
            .parse::<u64>()
            .ok()?;
        let mapped = read("/proc/self/status")
            .and_then(|s| kib(&s, "VmSize:"))
            .unwrap_or(0);
        // Address space the threads to come reserve beyond what they use:
        // a malloc arena (64 MiB) and a stack each, for rayon's and polars'
        // pools, and the libraries they map. (An experiment of 3,500 users
        // used 1.0 GB resident and aborted under a 1.5 GiB limit without it.)
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let threads = (64 << 20) * (2 * cores + 2) + (128 << 20);
        Some(soft.saturating_sub(mapped).saturating_sub(threads))
    });
    [machine, cgroup, address_space]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(8 << 30)
}

fn human(bytes: f64) -> String {
    if bytes >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes / (1u64 << 20) as f64)
    }
}

/// Work estimated to need more memory than this process may take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{what} needs about {} of memory, and {} is available to this process: ask for less",
    human(*.needed),
    human(*.available)
)]
pub struct TooLarge {
    /// The sizes that decided it, e.g. "simulating 5 users × 10 videos × 2 days".
    pub what: String,
    /// The estimate, in bytes.
    pub needed: f64,
    /// What this process may still allocate, in bytes.
    pub available: f64,
}

/// Refuses work estimated at `bytes` when it exceeds nine tenths of the
/// memory available; `what` names the sizes that decided it.
pub fn ensure_fits(what: &str, bytes: f64) -> Result<(), TooLarge> {
    let available = available_bytes() as f64;
    if bytes <= 0.9 * available {
        Ok(())
    } else {
        Err(TooLarge {
            what: what.to_string(),
            needed: bytes,
            available,
        })
    }
}

/// Memory of a simulation of `users × days` (impressions of about 25 per
/// user and day at ~256 bytes: the log, its frame and the writer's buffers;
/// `simulate --users 150000 --days 2` peaked at 212 bytes per impression) and
/// of its world.
pub fn simulation_bytes(users: usize, videos: usize, days: u32) -> f64 {
    users as f64 * days as f64 * 25.0 * 256.0 + (users + videos) as f64 * 1024.0
}
