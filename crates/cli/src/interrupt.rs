//! Ctrl-C and SIGTERM for the batch commands: outputs are written to
//! `.NAME.PID.tmp` files and renamed into place only when whole, so an
//! interrupted command leaves no half-written output; this removes the
//! temporary files themselves (and an output directory the command created
//! and left empty), then exits with 130.

use std::path::{Path, PathBuf};

/// The output paths named on the command line (`--out`, `--report`, and
/// `--model`, beside which `index` writes): where
/// temporary files may be, and whether each existed before the command.
fn outputs() -> Vec<(PathBuf, bool)> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let a = a.to_string_lossy();
        // `--model` too: `reelkit index` writes beside the model.
        let value = if let Some(v) = a
            .strip_prefix("--out=")
            .or(a.strip_prefix("--report="))
            .or(a.strip_prefix("--model="))
        {
            Some(PathBuf::from(v))
        } else if a == "--out" || a == "--report" || a == "--model" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            None
        };
        if let Some(p) = value {
            let existed = p.exists();
            out.push((p, existed));
        }
    }
    out
}

/// Removes this process's temporary files (`.*.PID.tmp`) from `dir`.
fn remove_temporaries(dir: &Path, suffix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(suffix) && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Watches for Ctrl-C and SIGTERM on a thread of its own for the rest of
/// the process.
pub fn install() {
    let outputs = outputs();
    let spawned = std::thread::Builder::new()
        .name("reelkit-interrupt".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let Ok(mut term) = signal(SignalKind::terminate()) else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            });
            let suffix = format!(".{}.tmp", std::process::id());
            let mut removed = 0;
            for (p, existed) in &outputs {
                // A file output's temporaries sit beside it; a directory
                // output's inside it.
                if let Some(parent) = p.parent() {
                    let parent = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                    removed += remove_temporaries(parent, &suffix);
                }
                if p.is_dir() {
                    removed += remove_temporaries(p, &suffix);
                    if !existed && std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none()) {
                        let _ = std::fs::remove_dir(p);
                    }
                }
            }
            eprintln!("interrupted: no output written ({removed} temporary files removed)");
            std::process::exit(130);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for Ctrl-C: {e}");
    }
}
