//! The real `journey serve` binary as a child process on the harness's database, fakes and
//! secrets: for tests that crash a server (`JOURNEY_FAULT`, or a kill) and check what the
//! next instance finds.

use super::Harness;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ServerProcess {
    pub base: String,
    child: Child,
}

impl ServerProcess {
    /// Starts `journey serve` with the harness's configuration, plus `env`.
    pub fn spawn(h: &Harness, env: &[(&str, &str)]) -> ServerProcess {
        let mut cfg = h.cfg.clone();
        cfg.bind = "127.0.0.1:0".into();
        let path = h
            .data_dir
            .join(format!("journey-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, toml::to_string(&cfg).expect("config serializes")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_journey"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JOURNEY_CONFIG", &path)
            .env("JOURNEY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("journey serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("journey serve printed where it listens")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess { base, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits for the process to end by itself (an injected crash); true if it aborted.
    pub async fn wait_crashed(&mut self) -> bool {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return !status.success();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not crash");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
