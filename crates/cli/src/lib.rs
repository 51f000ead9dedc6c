//! The `candor` command line as a library, so the workspace's end-to-end tests can drive the
//! same code paths (pulling, verifying, loading) the binary uses.
//!
//! - [`args`]: every command's arguments.
//! - [`commands`]: one module per command.
//! - [`load`]: verify, then load: the one path every model-running command takes.
//! - [`resolve`], [`home`]: where models and manifests are.
//! - [`error`]: exit codes.
//! - [`progress`], [`table`]: what long work and results look like on a terminal.

pub mod args;
pub mod commands;
pub mod error;
pub mod home;
pub mod load;
pub mod progress;
pub mod resolve;
pub mod table;

use args::{Cli, Command};

use clap::Parser;

/// Parses the command line, runs the command and exits with its exit code.
pub fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    if let Err(e) = run(cli) {
        match e.chain().find_map(|c| c.downcast_ref::<error::Refusal>()) {
            // A verification refusal names each reason and what would load the model anyway.
            Some(r) => eprint!("error: {}\n{}", r.title(), r.findings()),
            None => eprintln!("error: {e:#}"),
        }
        std::process::exit(error::ExitCode::of(&e).code());
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let home = home::Home::from_env()?;
    match &cli.command {
        Command::Pull(a) => commands::pull::run(&home, a),
        Command::Verify(a) => commands::verify::run(&home, a),
        Command::Show(a) => commands::show::run(&home, a),
        Command::List(a) => commands::list::run(&home, a),
        Command::Run(a) => commands::run::run(&home, a),
        Command::Chat(a) => commands::chat::run(&home, a),
        Command::Bench(a) => commands::bench::run(&home, a),
        Command::Perplexity(a) => commands::perplexity::run(&home, a),
        Command::Tokenize(a) => commands::tokenize::run(&home, a),
        Command::Serve(a) => commands::serve::run(&home, a),
        Command::Manifest(c) => commands::manifest::run(&home, c),
        Command::License(c) => commands::license::run(&home, c),
        Command::Completions(a) => commands::completions::run(a),
        Command::Man(a) => commands::man::run(a),
    }
}
