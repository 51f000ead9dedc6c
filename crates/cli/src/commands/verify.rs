//! `candor verify MODEL`: the verifier's report, without loading anything.

use crate::args::VerifyArgs;
use crate::error::CliError;
use crate::home::Home;
use crate::load::{require_allowed, verify_model, verify_options};
use crate::resolve::{resolve, Resolved};
use anyhow::Result;
use candor_verify::{Manifest, SignatureCheck, SignatureOptions, VerifyKey};
use std::path::PathBuf;

pub fn run(home: &Home, args: &VerifyArgs) -> Result<()> {
    let resolved = match &args.manifest {
        Some(file) => Resolved {
            manifest: Some(Manifest::load(file)?),
            target: PathBuf::from(&args.model),
        },
        None => resolve(home, &args.model)?,
    };
    let mut opts = verify_options(home, &args.policy)?;
    if let Some(level) = args.require {
        opts.policy.min_level = Some(level);
    }
    if let Some(bundle) = &args.signature {
        let key = match (
            &args.signature_key.public_key,
            &args.signature_key.certificate_chain,
        ) {
            // As the crate's error, so that the exit code follows its class.
            (Some(k), _) => VerifyKey::load_public_key(k).map_err(candor_verify::Error::from)?,
            (None, Some(c)) => {
                VerifyKey::load_certificate_roots(c).map_err(candor_verify::Error::from)?
            }
            (None, None) => {
                return Err(CliError::usage(
                    "--signature needs --public-key KEY or --certificate-chain CA",
                )
                .into())
            }
        };
        opts.signature = Some(SignatureCheck {
            bundle: bundle.clone(),
            key,
            options: SignatureOptions {
                allow_unsigned_files: args.ignore_unsigned_files,
                ..Default::default()
            },
        });
    }
    // A refusal is still a report: print it, then fail with the outcome's exit code.
    let verdict = verify_model(&resolved, &opts)?;
    print_report(verdict.report(), args.json);
    require_allowed(verdict).map(|_| ())
}

fn print_report(report: &candor_verify::Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
}
