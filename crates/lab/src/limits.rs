//! One size policy: a count the user gives (users, days, runs, items,
//! impressions) is turned into the memory it needs and checked against what
//! the machine has before any work starts, so a size that cannot fit is a
//! clear refusal with the estimate, not an allocation abort an hour in.

/// The limit that decides how much memory this process may still take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The machine's `MemAvailable` (free memory and reclaimable cache).
    Machine,
    /// A cgroup's `memory.max` less what the group holds beyond its
    /// reclaimable page cache (a container's limit).
    Container,
    /// The address-space limit (`ulimit -v`) less the address space already
    /// mapped and what the threads to come reserve.
    AddressSpace,
    /// None could be read: 8 GiB is assumed.
    Assumed,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Machine => "the machine's available memory",
            Limit::Container => "the container's memory limit",
            Limit::AddressSpace => "the address-space limit, ulimit -v",
            Limit::Assumed => "assumed: no limit could be read",
        })
    }
}

/// Bytes this process may still allocate, and which limit decided it: the
/// least of the machine's `MemAvailable`, a cgroup's memory limit less its
/// usage (a container), and the address-space limit (`ulimit -v`) less the
/// address space already mapped; 8 GiB where none can be read.
fn available_bytes() -> (u64, Limit) {
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
    let cgroup = read("/sys/fs/cgroup/memory.max").and_then(|max| {
        container_room(
            &max,
            &read("/sys/fs/cgroup/memory.current").unwrap_or_default(),
            &read("/sys/fs/cgroup/memory.stat").unwrap_or_default(),
        )
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
    [
        (machine, Limit::Machine),
        (cgroup, Limit::Container),
        (address_space, Limit::AddressSpace),
    ]
    .into_iter()
    .filter_map(|(bytes, limit)| Some((bytes?, limit)))
    .min_by_key(|&(bytes, _)| bytes)
    .unwrap_or((8 << 30, Limit::Assumed))
}

/// Room left under a cgroup v2 limit, from its `memory.max`, `memory.current`
/// and `memory.stat`; `None` without a limit ("max"). `memory.current` counts
/// the group's page cache, which the kernel reclaims before it refuses an
/// allocation: after a long build it can fill the group, and every size was
/// refused.
fn container_room(max: &str, current: &str, stat: &str) -> Option<u64> {
    let max = max.trim().parse::<u64>().ok()?;
    let current = current.trim().parse::<u64>().unwrap_or(0);
    let stat = |key: &str| {
        stat.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cache = stat("active_file") + stat("inactive_file");
    Some(max.saturating_sub(current.saturating_sub(cache)))
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
    "{what} needs about {} of memory, and {} is available to this process ({limit}): ask for less",
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
    /// The limit that decided `available`.
    pub limit: Limit,
}

/// Refuses work estimated at `bytes` when it exceeds nine tenths of the
/// memory available; `what` names the sizes that decided it.
pub fn ensure_fits(what: &str, bytes: f64) -> Result<(), TooLarge> {
    let (available, limit) = available_bytes();
    let available = available as f64;
    if bytes <= 0.9 * available {
        Ok(())
    } else {
        Err(TooLarge {
            what: what.to_string(),
            needed: bytes,
            available,
            limit,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_page_cache_is_room_not_usage() {
        let stat = "anon 104857600\nfile 943718400\nactive_file 314572800\n\
                    inactive_file 629145600\nshmem 0\n";
        // 2 GiB limit, 1 GiB charged of which 900 MiB is page cache.
        let room = container_room("2147483648\n", "1073741824\n", stat);
        assert_eq!(room, Some(2147483648 - (1073741824 - 943718400)));
        // `active_file` is not read from the `file` line or a longer key.
        let only_file = container_room("2147483648", "1073741824", "file 943718400\n");
        assert_eq!(only_file, Some(1073741824));
        assert_eq!(container_room("max\n", "1073741824", stat), None);
        // A charge under the cache (racing reads) leaves the whole limit.
        assert_eq!(container_room("1000", "10", "inactive_file 50"), Some(1000));
    }
}
