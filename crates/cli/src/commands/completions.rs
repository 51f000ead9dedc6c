//! `candor completions SHELL`: a completion script generated from the clap definitions, so it
//! always knows every command and flag of this build.

use crate::args::{Cli, CompletionsArgs};
use anyhow::Result;
use clap::CommandFactory;

pub fn run(args: &CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "candor", &mut std::io::stdout());
    Ok(())
}
