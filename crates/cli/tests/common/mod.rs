//! What the binary-level tests share: the candor home the whole workspace's tests use (so the
//! real model is fetched once) and a `candor` command set up for tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const MODEL: &str = "smollm2-135m-instruct-q4_1";

/// The candor home shared with the workspace's other tests.
pub fn home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("candor-test-home")
}

/// `candor` with `home` as its CANDOR_HOME, offline from the Hugging Face hub (mirrors only),
/// no log filter from the environment and no stdin.
pub fn candor_in(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_candor"));
    c.env("CANDOR_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("CANDOR_LOG")
        .stdin(Stdio::null());
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
