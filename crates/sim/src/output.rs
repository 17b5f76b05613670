//! Writing a simulation run: events, users, videos and the hidden world.

use std::path::{Path, PathBuf};

use reelkit_logs::polars::prelude::*;
use reelkit_logs::{files::FileSet, Events};

use crate::error::{Error, Result};
use crate::world::World;

/// The files of one run, as written by [`write_run`].
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The impression log (Parquet).
    pub events: PathBuf,
    /// The users table (ids, sign-up day, home topic).
    pub users: PathBuf,
    /// The catalogue (ids, creator, format, duration, upload day).
    pub videos: PathBuf,
    /// The whole world, hidden parameters included (JSON).
    pub world: PathBuf,
}

impl RunFiles {
    /// The standard names inside `dir`.
    pub fn in_dir(dir: &Path) -> RunFiles {
        RunFiles {
            events: dir.join("events.parquet"),
            users: dir.join("users.parquet"),
            videos: dir.join("videos.parquet"),
            world: dir.join("world.json"),
        }
    }
}

fn frame(height: usize, cols: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new(height, cols).map_err(Error::Frame)
}

/// Observable user attributes: `user_id, signup_day, home_topic`.
pub fn users_frame(world: &World) -> Result<DataFrame> {
    let u = &world.users;
    frame(
        u.id.len(),
        vec![
            Column::new("user_id".into(), &u.id),
            Column::new("signup_day".into(), &u.signup_day),
            Column::new("home_topic".into(), &u.home_topic),
        ],
    )
}

/// Observable video attributes: `video_id, creator_id, topic, format,
/// duration_ms, upload_day, upload_ts_ms`.
pub fn videos_frame(world: &World) -> Result<DataFrame> {
    let v = &world.videos;
    let creator_id: Vec<u64> = v
        .creator
        .iter()
        .map(|&c| world.creators.id[c as usize])
        .collect();
    let format: Vec<&str> = v
        .long
        .iter()
        .map(|&l| if l { "long" } else { "short" })
        .collect();
    let upload_ts: Vec<i64> = v
        .upload_day
        .iter()
        .map(|&d| world.params.start_ts_ms + d as i64 * 86_400_000)
        .collect();
    frame(
        v.id.len(),
        vec![
            Column::new("video_id".into(), &v.id),
            Column::new("creator_id".into(), creator_id),
            Column::new("topic".into(), &v.topic),
            Column::new("format".into(), format),
            Column::new("duration_ms".into(), &v.duration_ms),
            Column::new("upload_day".into(), &v.upload_day),
            Column::new("upload_ts_ms".into(), upload_ts),
        ],
    )
}

/// Writes `events.parquet`, `users.parquet`, `videos.parquet` and `world.json`
/// (the hidden ground truth) into `dir`, all or nothing: files are staged under
/// temporary names and renamed only when every one is written.
pub fn write_run(dir: &Path, world: &World, events: &Events) -> Result<RunFiles> {
    let files = RunFiles::in_dir(dir);
    let mut set = FileSet::new();
    set.write_frame(&files.events, &mut events.to_dataframe()?)?;
    set.write_frame(&files.users, &mut users_frame(world)?)?;
    set.write_frame(&files.videos, &mut videos_frame(world)?)?;
    let json = serde_json::to_vec(world).map_err(|source| Error::Json {
        what: "world",
        source,
    })?;
    set.write(&files.world, |w| std::io::Write::write_all(w, &json))?;
    set.commit()?;
    Ok(files)
}
