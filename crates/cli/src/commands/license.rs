//! `candor license accept MODEL`: show the key terms, then record the user's acceptance.

use crate::args::LicenseCommand;
use crate::error::CliError;
use crate::home::Home;
use crate::resolve::manifest_by_id;
use anyhow::Result;
use candor_verify::AcceptanceStore;
use std::io::{BufRead, IsTerminal, Write};

pub fn run(home: &Home, cmd: &LicenseCommand) -> Result<()> {
    match cmd {
        LicenseCommand::Accept { model, yes } => {
            let m = manifest_by_id(home, model)?;
            let l = &m.license;
            println!("{} is licensed under {} ({})", m.id(), l.name, l.spdx);
            println!("full text: {}", l.url);
            for a in &l.additional {
                println!("and also {} ({}), because {}", a.name, a.spdx, a.reason);
                println!("full text: {}", a.url);
            }
            println!("key terms:");
            for t in l.effective_terms().at_a_glance() {
                println!("  - {t}");
            }
            if !yes {
                if !std::io::stdin().is_terminal() {
                    return Err(CliError::usage(
                        "accepting a license needs a terminal to confirm, or --yes after you have read the terms",
                    )
                    .into());
                }
                print!("Do you accept these terms? [y/N] ");
                std::io::stdout().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Err(CliError::refused("license not accepted; nothing recorded").into());
                }
            }
            let mut store = AcceptanceStore::load(home.root());
            let a = store.accept(&m)?;
            eprintln!(
                "candor: recorded acceptance of {} for {} on {}",
                a.license,
                a.manifest_id,
                a.accepted_at_local()
            );
            Ok(())
        }
    }
}
