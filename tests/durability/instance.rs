//! One `voxgate serve` process, the real binary, for tests that kill it.
//!
//! It runs on a free loopback port with the given environment (nothing of the test's own
//! `VOXGATE_*`/`PLIVO_*` environment leaks in), logs to a file the test names on failure,
//! and dies with SIGKILL ([`Instance::kill`]) or when dropped — never gracefully, so what
//! survives is only what the store made durable.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `voxgate serve`.
pub struct Instance {
    child: Child,
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

/// A free loopback port (bound, read and released: a small race, fine on loopback).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Instance {
    /// Starts `voxgate serve --config {config}` with `env`, logging to `log`, and waits
    /// until `/health` answers.
    pub async fn start(config: &Path, env: &[(&str, &str)], log: PathBuf) -> Self {
        let port = free_port();
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_voxgate"));
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (key, _) in std::env::vars() {
            if key.starts_with("VOXGATE_") || key.starts_with("PLIVO_") || key == "PORT" {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", "info");
        command.envs(env.iter().copied());
        let child = command.spawn().expect("spawn voxgate");
        let mut instance = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        instance.wait_healthy().await;
        instance
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "voxgate exited at start ({status}); log {}:\n{}",
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let health = client.get(format!("{}/health", self.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "voxgate not healthy within 30 s; log {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
