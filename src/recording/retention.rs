//! How long local recordings stay: a periodic sweep deletes published recordings older
//! than `keep_local_days`.
//!
//! "Published" is written down next to the file: once a recording is stored where its
//! URL points (uploaded, or kept locally when there is no upload target), the publisher
//! writes `<file>.published` holding the URL ([`mark_published`]). The sweep only ever
//! deletes a file that has this marker, so a recording whose upload failed (or that was
//! never handed over, e.g. after a crash) is never deleted: the local copy is the only
//! one. Age is the recording's modification time (written at the end of the call).
//!
//! It must never follow symlinks out of the folder, delete anything but a marked file
//! and its marker, or stop on one bad entry: each failure is logged and counted and the
//! sweep goes on.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::publish_config::PublishConfig;
use crate::telemetry;

/// Appended to a recording's file name to mark it published.
pub const MARKER_SUFFIX: &str = ".published";
/// Folders below the recording folder the sweep looks into.
const MAX_DEPTH: usize = 3;

/// The marker file of `file`.
pub fn marker_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(MARKER_SUFFIX);
    PathBuf::from(name)
}

/// Marks `file` as published at `url` (the sweep may delete it once old enough).
pub fn mark_published(file: &Path, url: &str) -> std::io::Result<()> {
    std::fs::write(marker_path(file), format!("{url}\n"))
}

/// Whether `file` was marked published.
pub fn is_published(file: &Path) -> bool {
    marker_path(file).is_file()
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Recordings deleted.
    pub deleted: usize,
    /// Published recordings not old enough yet.
    pub kept: usize,
    /// Recordings that could not be deleted (logged).
    pub failed: usize,
}

/// Deletes every published recording under `dir` whose modification time is at least
/// `keep` before `now`, with its marker. Markers whose recording is gone are removed.
pub fn sweep(dir: &Path, keep: Duration, now: SystemTime) -> Swept {
    let mut swept = Swept::default();
    sweep_dir(dir, keep, now, 0, &mut swept);
    if swept.deleted > 0 {
        metrics::counter!(telemetry::RECORDINGS_SWEPT, "outcome" => "deleted")
            .increment(swept.deleted as u64);
    }
    if swept.failed > 0 {
        metrics::counter!(telemetry::RECORDINGS_SWEPT, "outcome" => "failed")
            .increment(swept.failed as u64);
    }
    swept
}

fn sweep_dir(dir: &Path, keep: Duration, now: SystemTime, depth: usize, swept: &mut Swept) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            warn!(dir = %dir.display(), %error, "retention: cannot read the recording folder");
            swept.failed += 1;
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // `file_type` does not follow symlinks: a link is neither a folder nor a marker.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth < MAX_DEPTH {
                sweep_dir(&path, keep, now, depth + 1, swept);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let Some(recording) = path
            .to_str()
            .and_then(|p| p.strip_suffix(MARKER_SUFFIX))
            .map(PathBuf::from)
        else {
            continue;
        };
        let modified = match std::fs::symlink_metadata(&recording) {
            Ok(meta) if meta.is_file() => meta.modified().unwrap_or(now),
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Deleted by hand, or a sweep stopped between the two removals.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            Err(error) => {
                warn!(file = %recording.display(), %error, "retention: cannot read a recording");
                swept.failed += 1;
                continue;
            }
        };
        if now.duration_since(modified).unwrap_or_default() < keep {
            swept.kept += 1;
            continue;
        }
        match std::fs::remove_file(&recording) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                info!(file = %recording.display(), "retention: deleted a published recording");
                swept.deleted += 1;
            }
            Err(error) => {
                warn!(file = %recording.display(), %error, "retention: cannot delete a recording");
                swept.failed += 1;
            }
        }
    }
}

/// Sweeps `dir` every `every` (the first time right away) until `shutdown`.
pub fn spawn(
    dir: PathBuf,
    keep: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let dir = dir.clone();
            let swept =
                tokio::task::spawn_blocking(move || sweep(&dir, keep, SystemTime::now())).await;
            if let Err(error) = swept {
                warn!(%error, "retention: the sweep failed");
            }
        }
    })
}

/// Starts the sweep `config` asks for: none unless `keep_local_days` is set.
pub fn spawn_for(config: &PublishConfig, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
    let keep = config.keep_local()?;
    Some(spawn(
        config.dir.clone(),
        keep,
        config.sweep_every,
        shutdown,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn write(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"RIFF").unwrap();
    }

    #[test]
    fn deletes_only_published_recordings_past_the_retention() {
        let dir = std::env::temp_dir().join(format!("voxgate-retention-{}", uuid::Uuid::new_v4()));
        let published = dir.join("c1.wav");
        let nested = dir.join("2026-01-01/c2.opus");
        let failed_upload = dir.join("c3.wav");
        for file in [&published, &nested, &failed_upload] {
            write(file);
        }
        mark_published(&published, "s3://b/c1.wav").unwrap();
        mark_published(&nested, "s3://b/c2.opus").unwrap();
        let orphan_marker = marker_path(&dir.join("gone.wav"));
        std::fs::write(&orphan_marker, "s3://b/gone.wav").unwrap();

        let now = SystemTime::now();
        let swept = sweep(&dir, 7 * DAY, now + DAY);
        assert_eq!(
            swept,
            Swept {
                deleted: 0,
                kept: 2,
                failed: 0
            }
        );
        assert!(published.exists() && nested.exists());
        assert!(
            !orphan_marker.exists(),
            "a marker without its recording is cleaned up"
        );

        let swept = sweep(&dir, 7 * DAY, now + 8 * DAY);
        assert_eq!(
            swept,
            Swept {
                deleted: 2,
                kept: 0,
                failed: 0
            }
        );
        assert!(!published.exists() && !nested.exists());
        assert!(!is_published(&published) && !is_published(&nested));
        assert!(
            failed_upload.exists(),
            "never uploaded: the only copy stays"
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_not_an_error() {
        let dir = std::env::temp_dir().join(format!("voxgate-none-{}", uuid::Uuid::new_v4()));
        assert_eq!(sweep(&dir, DAY, SystemTime::now()), Swept::default());
    }
}
