//! The binary as an operator runs it: the demo, `status --json`, bad input that names
//! its path, a full disk, and the second stop signal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use webex_archiver::sim::{FaultAction, FaultRule, SimConfig, Simulator};

use crate::helpers::wait_for;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webex-archiver"));
    command.env_remove("RUST_LOG");
    command
}

/// Every `metadata.json` under `dir`, with its directory.
fn metadata_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            metadata_files(&path, out);
        } else if path.file_name().is_some_and(|n| n == "metadata.json") {
            out.push(path);
        }
    }
}

#[test]
fn the_demo_archives_a_simulated_org_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let out = binary().arg("--data-dir").arg(data.path()).args(["demo", "--recordings", "8"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("demo: OK") && stdout.contains("archived                8 of 8"), "{stdout}");
    assert!(stdout.contains("not downloadable"), "the prevent-downloading recording is reported: {stdout}");

    // The archive directory describes itself: every metadata.json lists files whose
    // bytes hash to what it says.
    let archive = data.path().join("demo/archive");
    let mut found = Vec::new();
    metadata_files(&archive, &mut found);
    assert_eq!(found.len(), 8);
    for path in found {
        let metadata: webex_archiver::archive::Metadata =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for file in metadata.files {
            let bytes = std::fs::read(archive.join(&file.key)).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), file.sha256, "{}", file.key);
        }
    }

    // status --json reads the demo's state: one key per state name.
    let out = binary()
        .args(["status", "--json"])
        .env("WEBEX_ARCHIVER__DATABASE__URL", format!("sqlite://{}", data.path().join("demo/state.db").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["archived"], 8);
    assert_eq!(status["not_downloadable"], 1);
    for key in ["pending", "archiving", "failed"] {
        assert_eq!(status[key], 0, "{status}");
    }

    // A second demo clears the first one's directory and passes again.
    let again = binary().arg("--data-dir").arg(data.path()).args(["demo", "--recordings", "3"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));
}

#[test]
fn a_sqlite_file_that_is_not_a_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.db");
    std::fs::write(&file, b"this is not a database, it is a shopping list\n".repeat(100)).unwrap();
    let out = binary()
        .arg("migrate")
        .env("WEBEX_ARCHIVER__DATABASE__URL", format!("sqlite://{}", file.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&file.display().to_string()) && stderr.contains("not a database"), "{stderr}");
}

#[test]
fn a_data_directory_that_cannot_be_written_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let data_dir = blocker.join("data");
    let out = binary().arg("--data-dir").arg(&data_dir).arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&data_dir.display().to_string()), "{stderr}");
}

/// A tmpfs of a few MiB, unmounted on drop (needs root, which CI has).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "this test mounts a small tmpfs to fill a disk: it needs root");
        Self { path: dir.path().to_path_buf(), _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_download_naming_the_path_and_archives_nothing() {
    let disk = SmallDisk::mount(6);
    let sim =
        Simulator::start(SimConfig { recordings: 1, size: Some(12 << 20), ..SimConfig::default() }).await.unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let archive = disk.path.join("archive");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .arg("sync")
        .env("WEBEX_ARCHIVER__WEBEX__BASE_URL", sim.api_base_url())
        .env("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "127.0.0.1")
        .env("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", sim.access_token())
        .env("WEBEX_ARCHIVER__WEBEX__SCOPE", "admin")
        .env("WEBEX_ARCHIVER__SYNC__SINCE", "70d")
        .env("WEBEX_ARCHIVER__DATABASE__URL", format!("sqlite://{}/state.db", state_dir.path().display()))
        .env("WEBEX_ARCHIVER__STORAGE__URL", format!("file://{}", archive.display()))
        .env("WEBEX_ARCHIVER__ARCHIVE__MAX_ATTEMPTS", "2")
        .env("WEBEX_ARCHIVER__ARCHIVE__RETRY_BASE", "50ms")
        .env("WEBEX_ARCHIVER__HTTP__LISTEN", "")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let failure =
        stderr.lines().find(|l| l.starts_with("failed: ")).unwrap_or_else(|| panic!("no failure line: {stderr}"));
    assert!(failure.contains(&archive.display().to_string()), "the error names the path: {failure}");
    assert!(failure.contains("No space left on device"), "the error says why: {failure}");
    assert!(stderr.contains("archived 0,"), "{stderr}");
    // No file and no metadata.json were left behind.
    let mut found = Vec::new();
    metadata_files(&archive, &mut found);
    assert!(found.is_empty());
    let leftovers: Vec<_> = walk(&archive);
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_second_stop_signal_exits_at_once() {
    let sim = Simulator::start(SimConfig {
        recordings: 1,
        size: Some(64 << 20),
        faults: vec![FaultRule::new(FaultAction::Throttle { bytes_per_second: 1_000_000 })],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("run")
        .env("WEBEX_ARCHIVER__WEBEX__BASE_URL", sim.api_base_url())
        .env("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "127.0.0.1")
        .env("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", sim.access_token())
        .env("WEBEX_ARCHIVER__WEBEX__SCOPE", "admin")
        .env("WEBEX_ARCHIVER__SYNC__SINCE", "70d")
        .env("WEBEX_ARCHIVER__SHUTDOWN__GRACE", "120s")
        .env("WEBEX_ARCHIVER__HTTP__LISTEN", "")
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the transfer to start", Duration::from_secs(30), || {
        let started = sim.counters().downloads.started;
        async move { (started > 0).then_some(()) }
    })
    .await;
    let signal = |child: &std::process::Child| {
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    };
    signal(&child);
    // Within the grace the transfer goes on: the process must not exit for a while.
    let observed = Instant::now();
    while observed.elapsed() < Duration::from_millis(800) {
        assert!(child.try_wait().unwrap().is_none(), "the first signal must let the transfer finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&child);
    let status = wait_for("the second signal to stop the process", Duration::from_secs(5), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert_eq!(status.code(), Some(130), "a second signal exits at once");
}
