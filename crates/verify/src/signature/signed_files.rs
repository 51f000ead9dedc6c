//! Hashing what the statement signs: every listed file (or each of its byte ranges in `shards`
//! mode) opened the way the signer's settings say, hashed in parallel in listed order, compared
//! with the signed digest, and checked not to have changed meanwhile. Digests the verifier has
//! already computed for the same file (same identity) are reused instead of read again.

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    io,
    path::Path,
};

use super::{
    bundle::{Serialization, Statement},
    model_files::{open_listed, shard_layout, Listed, Opened},
    FileProblem, SignatureError, SignatureOptions, SignedFile,
};
use crate::{files::FileIdentity, filetypes, hashing};

/// The signed files as found, and the identity each was hashed under.
pub(super) struct Checked {
    pub files: Vec<SignedFile>,
    pub identities: Vec<(String, FileIdentity)>,
}

/// One byte range to hash.
struct Job {
    file: usize,
    resource: String,
    start: u64,
    end: u64,
    signed: [u8; 32],
}

/// The listed files, opened, with the ranges still to hash.
struct Plan {
    opened: Vec<Option<(File, FileIdentity)>>,
    jobs: Vec<Job>,
    files: Vec<SignedFile>,
}

/// What the files are checked against: the model directory, the signed statement and the files
/// it lists, the caller's options, and the bundle (named in errors).
pub(super) struct Signed<'a> {
    pub root: &'a Path,
    pub statement: &'a Statement,
    pub listed: &'a [Listed],
    pub opts: &'a SignatureOptions,
    pub bundle: &'a Path,
}

pub(super) fn check(
    signed: &Signed,
    problems: &mut Vec<FileProblem>,
) -> Result<Checked, SignatureError> {
    let Signed {
        root, listed, opts, ..
    } = *signed;
    let plan = plan(signed, problems)?;
    let threads = filetypes::hashing_threads(opts.threads);
    let results = hashing::parallel_map(&plan.jobs, threads, |job| {
        let (f, _) = plan.opened[job.file].as_ref().expect("opened");
        hashing::sha256_range(f, job.start, job.end)
    });
    let mut changed = BTreeSet::new();
    for (job, r) in plan.jobs.iter().zip(results) {
        let path = &listed[job.file].path;
        match r.unwrap_or_else(|| Err(io::Error::other("hashing thread panicked"))) {
            Ok(Some(d)) if d == job.signed => {}
            Ok(Some(d)) => problems.push(FileProblem::DigestMismatch {
                path: path.clone(),
                resource: job.resource.clone(),
                signed: hex::encode(job.signed),
                actual: hex::encode(d),
            }),
            Ok(None) => {
                changed.insert(job.file);
            }
            Err(e) => {
                return Err(SignatureError::Io {
                    path: root.join(path),
                    source: e,
                })
            }
        }
    }
    // A file must not change while it is hashed.
    let mut identities = Vec::new();
    for (i, o) in plan.opened.iter().enumerate() {
        let Some((f, id)) = o else { continue };
        let now = f.metadata().map(|m| FileIdentity::of(&m));
        if changed.contains(&i) || now.map(|n| n != *id).unwrap_or(true) {
            problems.push(FileProblem::Changed {
                path: listed[i].path.clone(),
            });
        }
        identities.push((listed[i].path.clone(), *id));
    }
    Ok(Checked {
        files: plan.files,
        identities,
    })
}

/// Opens every listed file and decides which ranges to hash.
fn plan(signed: &Signed, problems: &mut Vec<FileProblem>) -> Result<Plan, SignatureError> {
    let Signed {
        root,
        statement: st,
        listed,
        opts,
        bundle,
    } = *signed;
    let mut plan = Plan {
        opened: Vec::with_capacity(listed.len()),
        jobs: Vec::new(),
        files: Vec::with_capacity(listed.len()),
    };
    for (i, l) in listed.iter().enumerate() {
        let o = open_listed(root, &l.path, st.allow_symlinks).map_err(|e| SignatureError::Io {
            path: root.join(&l.path),
            source: e,
        })?;
        let (file, id) = match o {
            Opened::File(f, id) => (f, id),
            Opened::Problem(p) => {
                problems.push(p);
                plan.opened.push(None);
                continue;
            }
        };
        let planned = match st.method {
            Serialization::Files => plan_whole_file(i, l, id, opts, &mut plan, problems),
            Serialization::Shards(shard) => {
                plan_shards(i, l, id.size, shard, bundle, &mut plan, problems)?
            }
        };
        plan.opened.push(planned.then_some((file, id)));
    }
    Ok(plan)
}

/// `files` mode: one digest for the whole file, reused when the verifier already hashed it.
fn plan_whole_file(
    i: usize,
    l: &Listed,
    id: FileIdentity,
    opts: &SignatureOptions,
    plan: &mut Plan,
    problems: &mut Vec<FileProblem>,
) -> bool {
    let (name, _, _, signed) = &l.ranges[0];
    let known = opts
        .known_digests
        .get(&l.path)
        .filter(|(_, kid)| *kid == id)
        .map(|(d, _)| *d);
    match known {
        Some(d) if d != *signed => problems.push(FileProblem::DigestMismatch {
            path: l.path.clone(),
            resource: name.clone(),
            signed: hex::encode(signed),
            actual: hex::encode(d),
        }),
        Some(_) => {}
        None => plan.jobs.push(Job {
            file: i,
            resource: name.clone(),
            start: 0,
            end: id.size,
            signed: *signed,
        }),
    }
    plan.files.push(SignedFile {
        path: l.path.clone(),
        size: id.size,
        sha256: Some(hex::encode(signed)),
        shards: None,
    });
    true
}

/// `shards` mode: the signed ranges must cut the file exactly as `model_signing` does.
fn plan_shards(
    i: usize,
    l: &Listed,
    size: u64,
    shard: u64,
    bundle: &Path,
    plan: &mut Plan,
    problems: &mut Vec<FileProblem>,
) -> Result<bool, SignatureError> {
    let mut got: Vec<(u64, u64)> = l.ranges.iter().map(|r| (r.1, r.2)).collect();
    got.sort_unstable();
    if got != shard_layout(size, shard) {
        let signed_size = got.iter().map(|r| r.1).max().unwrap_or(0);
        if signed_size == size {
            return Err(SignatureError::Malformed {
                bundle: bundle.to_path_buf(),
                problem: format!(
                    "the shards of '{}' do not cut it into {shard}-byte ranges",
                    l.path
                ),
            });
        }
        problems.push(FileProblem::SizeMismatch {
            path: l.path.clone(),
            signed: signed_size,
            actual: size,
        });
        return Ok(false);
    }
    for (name, start, end, signed) in &l.ranges {
        plan.jobs.push(Job {
            file: i,
            resource: name.clone(),
            start: *start,
            end: *end,
            signed: *signed,
        });
    }
    plan.files.push(SignedFile {
        path: l.path.clone(),
        size,
        sha256: None,
        shards: Some(l.ranges.len()),
    });
    Ok(true)
}

/// Listed order first, then the rest by path; one line per problem.
pub(super) fn in_listed_order(
    mut problems: Vec<FileProblem>,
    listed: &[Listed],
) -> Vec<FileProblem> {
    let order: HashMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, l)| (l.path.as_str(), i))
        .collect();
    problems.sort_by(|a, b| {
        let ka = order.get(a.path()).copied().unwrap_or(usize::MAX);
        let kb = order.get(b.path()).copied().unwrap_or(usize::MAX);
        ka.cmp(&kb).then_with(|| a.path().cmp(b.path()))
    });
    problems.dedup();
    problems
}
