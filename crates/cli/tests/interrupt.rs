//! `kill -9` at arbitrary points of a pull or a verification never leaves a file or a cache
//! entry that later passes as verified.

mod common;

use common::{candor_in, MODEL};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The exit code of `candor ARGS` in `home`, quiet: these tests look only at exit codes.
fn exit_code(home: &Path, args: &[&str]) -> Option<i32> {
    quiet(home, args).status().unwrap().code()
}

fn quiet(home: &Path, args: &[&str]) -> Command {
    let mut c = candor_in(home);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Starts `candor ARGS` in `home` and SIGKILLs it after `delay`.
fn kill_after(home: &Path, args: &[&str], delay: Duration) {
    let mut child = quiet(home, args).spawn().unwrap();
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[test]
fn killed_pulls_never_leave_a_file_that_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let final_path = home.join("models").join(MODEL).join(FILE);
    for ms in [30u64, 200, 600, 1200, 2000, 3500] {
        kill_after(home, &["pull", MODEL], Duration::from_millis(ms));
        // Whatever the kill left behind: either nothing under the final name, or the whole
        // file. A partial file only ever exists under a temporary name.
        if final_path.exists() {
            assert_eq!(
                exit_code(home, &["verify", MODEL, "--rehash"]),
                Some(0),
                "killed after {ms} ms: the visible file must be complete"
            );
        }
    }
    // A later pull completes and verifies.
    assert_eq!(exit_code(home, &["pull", MODEL]), Some(0));
    assert_eq!(exit_code(home, &["verify", MODEL, "--rehash"]), Some(0));
}

#[test]
fn killed_verifications_never_corrupt_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    assert_eq!(exit_code(home, &["pull", MODEL]), Some(0));
    for ms in [5u64, 20, 40, 80] {
        kill_after(
            home,
            &["verify", MODEL, "--rehash"],
            Duration::from_millis(ms),
        );
        assert_eq!(exit_code(home, &["verify", MODEL]), Some(0));
    }
    // Tamper after the cache knows the file: the cache must not vouch for the new bytes.
    let path = home.join("models").join(MODEL).join(FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(exit_code(home, &["verify", MODEL]), Some(3));
}
