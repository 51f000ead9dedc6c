//! `candor man`: man pages generated from the clap definitions (`man -l <(candor man)`), one
//! per command with `--output-dir`.

use crate::args::{Cli, ManArgs};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

pub fn run(args: &ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match &args.output_dir {
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(())
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(cmd, dir)
        }
    }
}

/// `candor.1`, then `candor-pull.1` etc. for each subcommand (and `candor-manifest-init.1` for
/// nested ones), each page's synopsis spelled as typed (`candor manifest init`).
fn write_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    let typed = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = sub
            .clone()
            .name(format!("{}-{}", cmd.get_name(), sub.get_name()))
            .bin_name(format!("{typed} {}", sub.get_name()));
        write_pages(page, dir)?;
    }
    let path = dir.join(format!("{}.1", cmd.get_name()));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("candor: wrote {}", path.display());
    Ok(())
}
