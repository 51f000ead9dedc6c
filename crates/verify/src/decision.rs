//! `verify`: open every file safely, check sizes and hashes (through the verification cache),
//! validate weight headers, compare what the files declare with the manifest, compute the
//! achieved openness, apply the policy and recorded acceptances, and decide. On success the
//! opened, hashed handles are returned; on refusal the error carries the full report.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    path::{Path, PathBuf},
    time::Instant,
};

use sha2::{Digest, Sha256};

use crate::{
    acceptance::AcceptanceStore,
    cache::VerifyCache,
    error::{Error, ErrorKind, Result},
    files::{open_in_dir, FileIdentity, OpenError, OpenedFile, VerifiedFile},
    formats::{
        self,
        gguf::GgufHeader,
        safetensors::{IndexError, SafetensorsHeader, SafetensorsIndex},
        FormatError, Header,
    },
    hashing::{self, Progress},
    license::{self, License, LicenseTerms},
    manifest::{self, Attestation, FileEntry, FileFormat, FileRole, Manifest, ModelInfo},
    model_card::{self, CardInfo},
    openness::{Component, ComponentGrade, Level, Openness},
    policy::{Policy, PolicyViolation, Subject},
    report::*,
    signature::{self, SignatureOptions, VerifyKey},
};

/// Extensions of files that hold weights (loadable or refused).
const WEIGHT_EXTS: &[&str] = &[
    "gguf",
    "safetensors",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "pkl",
    "pickle",
    "onnx",
    "h5",
    "msgpack",
    "npz",
    "joblib",
];
const MAX_WALK_ENTRIES: usize = 10_000;
const MAX_WALK_DEPTH: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Ignore the verification cache and hash every file.
    pub rehash: bool,
    /// Directory of the verification cache (the candor home); `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// `--accept-openness LEVEL`: load a model whose claim exceeds its achieved level, provided
    /// LEVEL is the achieved level.
    pub accept_openness: Option<Level>,
    /// `--allow-unlisted`.
    pub allow_unlisted: bool,
    /// Do not refuse weight files the manifest does not list.
    pub allow_extra: bool,
    pub policy: Policy,
    /// Where the policy came from, for messages and fixes.
    pub policy_source: Option<PathBuf>,
    pub acceptances: AcceptanceStore,
    /// Hashing threads; 0 = the number of CPUs.
    pub threads: usize,
    /// `--signature FILE` with `--public-key` or `--certificate-chain`: an OpenSSF model-signing
    /// bundle to verify over the model directory, besides any the manifest requires. A verified
    /// one vouches for a model that has no manifest.
    pub signature: Option<SignatureCheck>,
}

/// An OpenSSF model-signing bundle to check, and what it must verify with.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    pub bundle: PathBuf,
    pub key: VerifyKey,
    pub options: SignatureOptions,
}

impl VerifyOptions {
    /// Options that use the candor home: its cache, its acceptances and its `candor.toml`.
    pub fn with_home(home: &Path) -> Result<Self> {
        let policy_path = home.join(crate::policy::POLICY_FILE);
        Ok(VerifyOptions {
            cache_dir: Some(home.to_path_buf()),
            policy: Policy::load_from_home(home)?,
            policy_source: policy_path.exists().then_some(policy_path),
            acceptances: AcceptanceStore::load(home),
            ..Default::default()
        })
    }
}

/// A successful verification: the report and the opened, hashed files in manifest order.
#[derive(Debug)]
pub struct Verification {
    pub report: Report,
    pub files: Vec<VerifiedFile>,
}

impl Verification {
    pub fn weights(&self) -> impl Iterator<Item = &VerifiedFile> {
        self.files
            .iter()
            .filter(|f| f.role.is_none_or(|r| r == FileRole::Weights))
    }
    pub fn file_by_role(&self, role: FileRole) -> Option<&VerifiedFile> {
        self.files.iter().find(|f| f.role == Some(role))
    }
    pub fn file(&self, rel_path: &str) -> Option<&VerifiedFile> {
        self.files.iter().find(|f| f.rel_path == rel_path)
    }
    pub fn into_files(self) -> Vec<VerifiedFile> {
        self.files
    }
}

/// One file under check.
struct Slot {
    report_path: String,
    disk_path: String,
    entry: Option<FileEntry>,
    opened: Option<OpenedFile>,
    actual: Option<[u8; 32]>,
    cached: bool,
    status: FileStatus,
}

impl Slot {
    /// The manifest's role, or for an unlisted file the role its name implies.
    fn role(&self) -> FileRole {
        match &self.entry {
            Some(e) => e.role,
            None => role_for_name(&self.disk_path),
        }
    }
}

fn role_for_name(path: &str) -> FileRole {
    match path.rsplit('/').next().unwrap_or(path) {
        "config.json" => FileRole::Config,
        "generation_config.json" => FileRole::GenerationConfig,
        "tokenizer.json" | "tokenizer_config.json" => FileRole::Tokenizer,
        "chat_template.jinja" => FileRole::ChatTemplate,
        "README.md" => FileRole::ModelCard,
        "LICENSE" => FileRole::License,
        name if is_weight_name(name) => FileRole::Weights,
        _ => FileRole::Other,
    }
}

fn is_weight_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, e)| WEIGHT_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Relative paths of weight-like files under `root`, without following symlinked directories.
fn weight_files_in(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, prefix, depth)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                return Err(Error::Usage(format!(
                    "{} holds more than {MAX_WALK_ENTRIES} entries",
                    root.display()
                )));
            }
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if ft.is_dir() {
                if depth < MAX_WALK_DEPTH {
                    stack.push((entry.path(), rel, depth + 1));
                }
            } else if is_weight_name(&name) {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Files that travel with the weights and that the engine reads (configuration, tokenizer, chat
/// template) or that state terms (license, model card). An unlisted model hands these over
/// hashed too, so nothing the engine reads bypasses verification.
pub const COMPANION_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
    "README.md",
    "LICENSE",
];

fn companion_files_in(root: &Path) -> Vec<String> {
    COMPANION_FILES
        .iter()
        .filter(|f| root.join(f).is_file())
        .map(|f| f.to_string())
        .collect()
}

fn unlisted_digest() -> [u8; 32] {
    Sha256::digest(b"candor:unlisted").into()
}

/// A transformers `config.json` larger than this is not read for its architecture.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The architecture a transformers `config.json` names: `model_type` ("llama"), else the first
/// of `architectures`. None when the file is not such JSON.
fn config_architecture(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = v.get("model_type").and_then(|t| t.as_str()).or_else(|| {
        v.get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|t| t.as_str())
    })?;
    // A name, not free text: it goes into the manifest as is.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    ok.then(|| name.to_string())
}

fn read_bounded(file: &File, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let n = (size as usize).min(limit + 1);
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn base_model_matches(declared: &str, listed: &[String]) -> bool {
    let d = declared.trim().trim_end_matches('/').to_ascii_lowercase();
    listed.iter().any(|b| {
        let b = b.to_ascii_lowercase();
        d == b || d.ends_with(&format!("/{b}"))
    })
}

fn finding(reason: Reason, fix: Option<String>) -> Finding {
    Finding {
        kind: reason.kind(),
        message: reason.message(),
        fix,
        reason,
    }
}

/// Verify `target` (a model directory or a single file) against `manifest`, or as an unlisted
/// model when `manifest` is `None`.
pub fn verify(
    manifest: Option<&Manifest>,
    target: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<Verification> {
    let started = Instant::now();
    let meta = std::fs::metadata(target).map_err(|e| Error::io(target, e))?;
    let mut warnings = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut overrides = Vec::new();

    // Where the files are, and which files to check.
    let (root, mut slots) = if meta.is_dir() {
        let root = target.canonicalize().map_err(|e| Error::io(target, e))?;
        let slots: Vec<Slot> = match manifest {
            Some(m) => m
                .files
                .iter()
                .map(|e| Slot {
                    report_path: e.path.clone(),
                    disk_path: e.path.clone(),
                    entry: Some(e.clone()),
                    opened: None,
                    actual: None,
                    cached: false,
                    status: FileStatus::Ok,
                })
                .collect(),
            None => {
                let mut found = weight_files_in(&root)?;
                if found.is_empty() {
                    return Err(Error::Usage(format!(
                        "no model files (.gguf, .safetensors) in {}",
                        target.display()
                    )));
                }
                found.extend(companion_files_in(&root));
                found
                    .into_iter()
                    .map(|p| Slot {
                        report_path: p.clone(),
                        disk_path: p,
                        entry: None,
                        opened: None,
                        actual: None,
                        cached: false,
                        status: FileStatus::Unlisted,
                    })
                    .collect()
            }
        };
        (root, slots)
    } else {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Usage(format!("{}: not a usable file name", target.display())))?
            .to_string();
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let root = parent.canonicalize().map_err(|e| Error::io(parent, e))?;
        let slots = match manifest {
            Some(m) if m.files.len() == 1 => vec![Slot {
                report_path: m.files[0].path.clone(),
                disk_path: name,
                entry: Some(m.files[0].clone()),
                opened: None,
                actual: None,
                cached: false,
                status: FileStatus::Ok,
            }],
            Some(m) => {
                return Err(Error::Usage(format!(
                    "manifest {} lists {} files; pass the model directory, not the file {}",
                    m.id(),
                    m.files.len(),
                    target.display()
                )))
            }
            None => vec![Slot {
                report_path: name.clone(),
                disk_path: name,
                entry: None,
                opened: None,
                actual: None,
                cached: false,
                status: FileStatus::Unlisted,
            }],
        };
        (root, slots)
    };

    // Extra weight files next to a manifest's files.
    let mut extra_reports = Vec::new();
    if meta.is_dir() && manifest.is_some() && !opts.allow_extra {
        let listed: HashSet<&str> = slots.iter().map(|s| s.disk_path.as_str()).collect();
        for p in weight_files_in(&root)? {
            if !listed.contains(p.as_str()) {
                findings.push(finding(
                    Reason::ExtraFile { path: p.clone() },
                    Some("remove the file from the model directory, or pass --allow-extra".into()),
                ));
                extra_reports.push(FileReport {
                    path: p,
                    role: None,
                    format: None,
                    status: FileStatus::Extra,
                    expected_size: None,
                    actual_size: None,
                    expected_sha256: None,
                    actual_sha256: None,
                    cached: false,
                });
            }
        }
    }

    // Open safely and check sizes.
    for s in &mut slots {
        let expected_hex = s.entry.as_ref().map(|e| e.sha256_hex());
        match open_in_dir(&root, &s.disk_path, expected_hex.as_deref()) {
            Ok(o) => {
                warnings.extend(o.warnings.iter().cloned());
                if let Some(e) = &s.entry {
                    if o.identity.size != e.size {
                        s.status = FileStatus::SizeMismatch;
                        findings.push(finding(
                            Reason::SizeMismatch {
                                path: s.report_path.clone(),
                                expected: e.size,
                                actual: o.identity.size,
                            },
                            Some(refetch_fix(manifest)),
                        ));
                    }
                }
                s.opened = Some(o);
            }
            Err(OpenError::Missing) => {
                s.status = FileStatus::Missing;
                findings.push(finding(
                    Reason::MissingFile {
                        path: s.report_path.clone(),
                    },
                    Some(refetch_fix(manifest)),
                ));
            }
            Err(OpenError::Unsafe(problem)) => {
                s.status = FileStatus::Unsafe;
                findings.push(finding(
                    Reason::UnsafeFile {
                        path: s.report_path.clone(),
                        problem,
                    },
                    Some("replace the link or special file with the regular file itself".into()),
                ));
            }
            Err(OpenError::Io(e)) => return Err(Error::io(root.join(&s.disk_path), e)),
        }
    }

    // Hash, through the cache.
    let mdigest = manifest
        .map(|m| *m.digest())
        .unwrap_or_else(unlisted_digest);
    let mut cache = opts.cache_dir.as_deref().map(VerifyCache::load);
    let mut to_hash = Vec::new();
    for (i, s) in slots.iter_mut().enumerate() {
        if matches!(
            s.status,
            FileStatus::SizeMismatch | FileStatus::Missing | FileStatus::Unsafe
        ) {
            continue;
        }
        let Some(o) = &s.opened else { continue };
        if !opts.rehash {
            if let Some(hit) = cache
                .as_ref()
                .and_then(|c| c.lookup(&o.identity, &mdigest, &s.report_path))
            {
                s.actual = Some(hit);
                s.cached = true;
                continue;
            }
        }
        to_hash.push(i);
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    };
    let jobs: Vec<(&str, &File)> = to_hash
        .iter()
        .map(|&i| {
            (
                slots[i].report_path.as_str(),
                &slots[i].opened.as_ref().expect("opened").file,
            )
        })
        .collect();
    let results = hashing::sha256_files(&jobs, threads, progress);
    let mut hashed_bytes = 0u64;
    for (&i, r) in to_hash.iter().zip(results) {
        let (digest, n) = r.map_err(|e| Error::io(root.join(&slots[i].disk_path), e))?;
        hashed_bytes += n;
        let s = &mut slots[i];
        s.actual = Some(digest);
        let o = s.opened.as_ref().expect("opened");
        // The file must not have changed while we read it.
        let now = o
            .file
            .metadata()
            .map_err(|e| Error::io(&o.opened_path, e))?;
        if FileIdentity::of(&now) != o.identity || n != o.identity.size {
            return Err(Error::FileChanged {
                path: o.opened_path.clone(),
                what: "modified while it was hashed",
            });
        }
        if let Some(c) = cache.as_mut() {
            c.insert(&o.identity, &mdigest, &s.report_path, &digest);
        }
    }
    if let Some(c) = cache.as_mut() {
        if let Err(e) = c.save() {
            warnings.push(format!("could not save the verification cache: {e}"));
        }
    }

    // Compare hashes.
    for s in &mut slots {
        let Some(actual) = s.actual else { continue };
        if let Some(e) = &s.entry {
            if actual != e.sha256 {
                s.status = FileStatus::HashMismatch;
                findings.push(finding(
                    Reason::HashMismatch {
                        path: s.report_path.clone(),
                        expected: e.sha256_hex(),
                        actual: hex::encode(actual),
                    },
                    Some(refetch_fix(manifest)),
                ));
            }
        } else if let Some(blob) = s.opened.as_ref().and_then(|o| o.hf_blob.as_ref()) {
            // An unlisted file in the HF cache: an LFS blob is named by its sha256.
            if blob.len() == 64 && *blob != hex::encode(actual) {
                s.status = FileStatus::HashMismatch;
                findings.push(finding(
                    Reason::HashMismatch {
                        path: s.report_path.clone(),
                        expected: blob.clone(),
                        actual: hex::encode(actual),
                    },
                    Some(
                        "delete the blob from the Hugging Face cache and download it again".into(),
                    ),
                ));
            }
        }
    }

    // Signatures: the manifest's [signature] and the command line's --signature. Every file
    // handed over must be covered, and be the very file the signature check hashed.
    let known: HashMap<String, ([u8; 32], FileIdentity)> = slots
        .iter()
        .filter_map(|s| {
            Some((
                s.disk_path.clone(),
                (s.actual?, s.opened.as_ref()?.identity),
            ))
        })
        .collect();
    let mut checks: Vec<(
        SignatureSource,
        PathBuf,
        &VerifyKey,
        SignatureOptions,
        String,
    )> = Vec::new();
    if let Some((m, spec)) = manifest.and_then(|m| m.signature.as_ref().map(|s| (m, s))) {
        checks.push((
            SignatureSource::Manifest,
            root.join(&spec.path),
            spec.verify_key(),
            SignatureOptions {
                allow_unsigned_files: opts.allow_extra,
                expected_subject_digest: spec.expect_subject_digest,
                threads: opts.threads,
                known_digests: known.clone(),
                ..Default::default()
            },
            format!(
                "fetch the model and its signature {} again from the publisher; the manifest {} pins {}",
                spec.path,
                m.id(),
                spec.verify_key().describe()
            ),
        ));
    }
    if let Some(c) = &opts.signature {
        let mut o = c.options.clone();
        o.known_digests = known;
        if o.threads == 0 {
            o.threads = opts.threads;
        }
        checks.push((
            SignatureSource::CommandLine,
            c.bundle.clone(),
            &c.key,
            o,
            "the files are not what was signed, or the signature is not from this key: fetch them again from the signer, or check --public-key / --certificate-chain".into(),
        ));
    }
    let mut signature_reports = Vec::new();
    let mut signature_failed = false;
    let mut cli_signature: Option<String> = None;
    for (source, bundle, key, sopts, fix) in checks {
        let shown = bundle.display().to_string();
        match signature::verify_bundle(&bundle, &root, key, &sopts) {
            Ok(rep) => {
                let mut problems = Vec::new();
                for s in &slots {
                    if !rep.covers(&s.disk_path) {
                        problems.push(format!("{}: not covered by the signature", s.report_path));
                        continue;
                    }
                    let id = rep.identities.iter().find(|(p, _)| *p == s.disk_path);
                    if let (Some(o), Some((_, id))) = (&s.opened, id) {
                        if o.identity != *id {
                            problems.push(format!(
                                "{}: changed between the hash and the signature checks",
                                s.report_path
                            ));
                        }
                    }
                    if let (Some(a), Some(h)) = (s.actual, rep.file_sha256(&s.disk_path)) {
                        if hex::encode(a) != h {
                            problems.push(format!(
                                "{}: sha256 {} is not the signed {h}",
                                s.report_path,
                                hex::encode(a)
                            ));
                        }
                    }
                }
                for w in &rep.warnings {
                    warnings.push(format!("{shown}: {w}"));
                }
                let error = (!problems.is_empty()).then(|| problems.join("; "));
                if let Some(e) = &error {
                    signature_failed = true;
                    findings.push(finding(
                        Reason::SignatureInvalid {
                            bundle: shown.clone(),
                            error: format!("{shown}: {e}"),
                            files: Vec::new(),
                        },
                        Some(fix),
                    ));
                } else if source == SignatureSource::CommandLine {
                    cli_signature = Some(rep.summary());
                }
                signature_reports.push(SignatureCheckReport {
                    source,
                    bundle: shown,
                    verified: error.is_none(),
                    signature: Some(rep),
                    error,
                });
            }
            // A key or bundle type the user chose that cannot work: a usage error, not a verdict.
            Err(Error::Signature(e))
                if source == SignatureSource::CommandLine && e.kind() == ErrorKind::Usage =>
            {
                return Err(Error::Signature(e))
            }
            Err(Error::Signature(e)) if e.kind() != ErrorKind::Io => {
                signature_failed = true;
                findings.push(finding(
                    Reason::SignatureInvalid {
                        bundle: shown.clone(),
                        error: e.to_string(),
                        files: e.file_problems().to_vec(),
                    },
                    Some(fix),
                ));
                signature_reports.push(SignatureCheckReport {
                    source,
                    bundle: shown,
                    verified: false,
                    signature: None,
                    error: Some(e.to_string()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let signed = !signature_failed && signature_reports.iter().any(|r| r.verified);

    // Validate weight headers and collect what the files declare.
    let mut declared = Declared::default();
    let mut gguf_headers: Vec<(String, GgufHeader)> = Vec::new();
    let mut st_headers: Vec<(String, SafetensorsHeader)> = Vec::new();
    for s in &mut slots {
        if !matches!(s.status, FileStatus::Ok | FileStatus::Unlisted) {
            continue;
        }
        let Some(o) = &s.opened else { continue };
        let is_weights = s.role() == FileRole::Weights;
        if !is_weights {
            continue;
        }
        let fmt = s.entry.as_ref().map(|e| e.format);
        match formats::validate_weights(&o.file, &s.disk_path, fmt) {
            Ok(Header::Gguf(h)) => gguf_headers.push((s.report_path.clone(), h)),
            Ok(Header::Safetensors(h)) => st_headers.push((s.disk_path.clone(), h)),
            Err(error) => {
                s.status = FileStatus::Malformed;
                let fix = match &error {
                    FormatError::Pickle(_) | FormatError::Zip(_) => {
                        "convert the checkpoint to safetensors or GGUF with trusted tools"
                    }
                    _ => "the file is damaged or not a model candor can load; fetch it again from its publisher",
                };
                findings.push(finding(
                    Reason::MalformedFile {
                        path: s.report_path.clone(),
                        error,
                    },
                    Some(fix.into()),
                ));
            }
        }
    }
    // A sharded safetensors model: the index must agree with the shards.
    if let Some((index_path, finding_)) =
        check_safetensors_index(&root, &slots, &st_headers, manifest.is_some())
    {
        findings.push(finding(
            Reason::MalformedFile {
                path: index_path,
                error: FormatError::SafetensorsIndex(finding_),
            },
            Some(
                "the shards and their index disagree; fetch the model again from its publisher"
                    .into(),
            ),
        ));
    }
    for (path, h) in &gguf_headers {
        declared.gguf_architecture = h.architecture().map(str::to_string);
        declared.gguf_license = h.license().map(str::to_string);
        declared.gguf_license_name = h.license_name().map(str::to_string);
        declared.gguf_base_models = h
            .base_models()
            .into_iter()
            .filter_map(|b| {
                b.repo_url.or_else(|| match (b.organization, b.name) {
                    (Some(o), Some(n)) => Some(format!("{o}/{}", n.replace(' ', "-"))),
                    (None, Some(n)) => Some(n),
                    _ => None,
                })
            })
            .collect();
        if let Some(m) = manifest {
            let src = |k: &str| format!("{path} (GGUF {k})");
            let fix = format!(
                "correct [license] in manifest {}, or fetch the file the manifest lists",
                m.id()
            );
            if let Some(l) = h.license() {
                if !license::declared_matches(l, &m.license) {
                    findings.push(finding(
                        Reason::DeclaredLicenseMismatch {
                            source: src("general.license"),
                            declared: l.into(),
                            manifest: m.license.spdx.clone(),
                        },
                        Some(fix.clone()),
                    ));
                }
            }
            if let Some(l) = h.license_name() {
                if !license::declared_matches(l, &m.license) {
                    findings.push(finding(
                        Reason::DeclaredLicenseMismatch {
                            source: src("general.license.name"),
                            declared: l.into(),
                            manifest: m.license.name.clone(),
                        },
                        Some(fix.clone()),
                    ));
                }
            }
            for b in &declared.gguf_base_models {
                if !base_model_matches(b, &m.model.base_models) {
                    findings.push(finding(
                        Reason::DeclaredBaseModelMismatch {
                            source: src("general.base_model"),
                            declared: b.clone(),
                            manifest: m.model.base_models.clone(),
                        },
                        Some(format!(
                            "correct [model].base_models in manifest {}",
                            m.id()
                        )),
                    ));
                }
            }
            if let Some(a) = h.architecture() {
                if !a.eq_ignore_ascii_case(&m.model.architecture) {
                    findings.push(finding(
                        Reason::DeclaredArchitectureMismatch {
                            source: src("general.architecture"),
                            declared: a.into(),
                            manifest: m.model.architecture.clone(),
                        },
                        Some(format!(
                            "correct [model].architecture in manifest {}",
                            m.id()
                        )),
                    ));
                }
            }
        }
    }

    // The model card's front matter.
    let card = read_card(manifest, &root, &slots, &mut warnings);
    if let Some((card_path, info)) = card {
        declared.card_license = info.license.clone();
        declared.card_license_name = info.license_name.clone();
        declared.card_base_models = info.base_model.clone();
        if let Some(m) = manifest {
            let src = format!("{card_path} (front matter)");
            let fix = format!("correct [license] in manifest {}", m.id());
            let card_id = match (info.license.as_deref(), info.license_name.as_deref()) {
                (Some("other"), Some(n)) => Some(n),
                (Some(l), _) => Some(l),
                (None, n) => n,
            };
            if let Some(l) = card_id {
                if !license::declared_matches(l, &m.license) {
                    findings.push(finding(
                        Reason::DeclaredLicenseMismatch {
                            source: src.clone(),
                            declared: l.into(),
                            manifest: m.license.spdx.clone(),
                        },
                        Some(fix),
                    ));
                }
            }
            for b in &info.base_model {
                if !base_model_matches(b, &m.model.base_models) {
                    findings.push(finding(
                        Reason::DeclaredBaseModelMismatch {
                            source: src.clone(),
                            declared: b.clone(),
                            manifest: m.model.base_models.clone(),
                        },
                        Some(format!(
                            "correct [model].base_models in manifest {}",
                            m.id()
                        )),
                    ));
                }
            }
        }
    }

    // Openness: the claim is believed only as far as the grades carry it.
    let assessment = manifest.map(|m| m.assess_openness());
    let achieved = assessment
        .as_ref()
        .map(|a| a.achieved)
        .unwrap_or(Level::Closed);
    if let (Some(m), Some(a)) = (manifest, &assessment) {
        let claimed = m.openness.claimed;
        if claimed > a.achieved {
            if opts.accept_openness == Some(a.achieved) {
                overrides.push(format!(
                    "--accept-openness {}: loading as {} although the publisher claims {claimed}",
                    a.achieved, a.achieved
                ));
            } else {
                if let Some(given) = opts.accept_openness {
                    warnings.push(format!(
                        "--accept-openness {given} does not apply: the achieved level is {}",
                        a.achieved
                    ));
                }
                findings.push(finding(
                    Reason::ClaimAboveAchieved {
                        claimed,
                        achieved: a.achieved,
                        rules: a.failures_for(claimed),
                    },
                    Some(format!(
                        "pass --accept-openness {} to load it as what it is",
                        a.achieved
                    )),
                ));
            }
        } else if let Some(given) = opts.accept_openness {
            if given != a.achieved {
                warnings.push(format!(
                    "--accept-openness {given} ignored: the achieved level is {}",
                    a.achieved
                ));
            }
        }
    }

    // Policy. A model without a manifest whose signature verified with a key the user named is
    // not unlisted: the signer vouches for its files.
    let unlisted = manifest.is_none();
    let vouched = unlisted && signed && cli_signature.is_some();
    if let (true, Some(summary)) = (vouched, &cli_signature) {
        overrides.push(format!(
            "no manifest: the files are trusted because the signature verified ({summary}); license and openness are unknown"
        ));
    }
    let subject = Subject {
        license: manifest.map(|m| &m.license),
        achieved,
        signed,
        unlisted: unlisted && !vouched,
    };
    let policy_name = opts
        .policy_source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the policy".into());
    for v in opts.policy.evaluate(&subject, opts.allow_unlisted) {
        let fix = match &v {
            PolicyViolation::UnlistedNotAllowed => {
                "pass --allow-unlisted, set allow_unlisted = true in the policy, or write a manifest with `candor manifest init`".to_string()
            }
            PolicyViolation::BelowMinLevel { achieved, .. } => {
                format!("set min_level = \"{achieved}\" (or lower) in {policy_name}, or use --policy with another policy")
            }
            PolicyViolation::LicenseNotAllowed { license, .. } => format!("add {license} to allow_licenses in {policy_name}"),
            PolicyViolation::LicenseDenied { denied, .. } => format!("remove {denied} from deny_licenses in {policy_name}"),
            PolicyViolation::CommercialUseRequired { .. } => format!("set require_commercial_use = false in {policy_name}"),
            PolicyViolation::SignatureRequired => {
                format!("verify an OpenSSF model-signing bundle: a [signature] table in the manifest, or --signature FILE with --public-key KEY or --certificate-chain CA; or set require_signature = false in {policy_name}")
            }
        };
        findings.push(finding(Reason::Policy { violation: v }, Some(fix)));
    }
    if unlisted && !vouched && (opts.allow_unlisted || opts.policy.allow_unlisted) {
        overrides.push(if opts.allow_unlisted {
            "--allow-unlisted: loading a model without a manifest (nothing was compared with a publisher)".into()
        } else {
            "policy allow_unlisted: loading a model without a manifest (nothing was compared with a publisher)".into()
        });
    }

    // Must-accept licenses.
    if let Some(m) = manifest {
        if m.license.terms.must_accept {
            match opts.acceptances.find(m) {
                Some(a) => overrides.push(format!(
                    "license {} accepted on {}; its terms apply",
                    m.license.name,
                    a.accepted_at_local()
                )),
                None => findings.push(finding(
                    Reason::LicenseNotAccepted {
                        manifest_id: m.id().into(),
                        license: m.license.name.clone(),
                    },
                    Some(format!(
                        "read the terms and run `candor license accept {}`",
                        m.id()
                    )),
                )),
            }
        }
        if m.attestation == Attestation::SelfAttested {
            warnings.push(format!(
                "manifest {} is self-attested: written from local files, not checked against a publisher",
                m.id()
            ));
        }
    }

    // Root digest of what was found.
    let all_hashed = slots.iter().all(|s| s.actual.is_some());
    let root_digest = (manifest.is_some() && all_hashed).then(|| {
        hex::encode(manifest::root_digest(slots.iter().map(|s| {
            (s.report_path.as_str(), s.actual.as_ref().expect("hashed"))
        })))
    });

    // Assemble the report.
    let mut file_reports: Vec<FileReport> = slots
        .iter()
        .map(|s| FileReport {
            path: s.report_path.clone(),
            role: Some(s.role()),
            format: s.entry.as_ref().map(|e| e.format),
            status: s.status,
            expected_size: s.entry.as_ref().map(|e| e.size),
            actual_size: s.opened.as_ref().map(|o| o.identity.size),
            expected_sha256: s.entry.as_ref().map(|e| e.sha256_hex()),
            actual_sha256: s.actual.map(hex::encode),
            cached: s.cached,
        })
        .collect();
    file_reports.extend(extra_reports);

    let severity = |k: ErrorKind| match k {
        ErrorKind::Integrity => 0,
        ErrorKind::Malformed => 1,
        _ => 2,
    };
    findings.sort_by_key(|f| severity(f.kind));
    let outcome = match findings.first().map(|f| f.kind) {
        None => Outcome::Allowed,
        Some(ErrorKind::Integrity) => Outcome::IntegrityFailure,
        Some(ErrorKind::Malformed) => Outcome::Malformed,
        Some(_) => Outcome::Refused,
    };
    let report = Report {
        schema_version: REPORT_SCHEMA_VERSION,
        target: target.display().to_string(),
        manifest: manifest.map(|m| ManifestSummary {
            id: m.id().into(),
            attestation: m.attestation,
            path: m.path().map(|p| p.display().to_string()),
            digest: hex::encode(m.digest()),
        }),
        model: manifest.map(|m| m.model.clone()),
        files: file_reports,
        root_digest,
        expected_root_digest: manifest.map(|m| hex::encode(m.computed_root_digest())),
        license: manifest.map(|m| LicenseReport {
            spdx: m.license.spdx.clone(),
            name: m.license.name.clone(),
            url: m.license.url.clone(),
            hf_id: m.license.hf_id.clone(),
            osi_approved: license::is_osi_approved(&m.license.spdx),
            at_a_glance: m.license.terms.at_a_glance(),
            terms: m.license.terms.clone(),
        }),
        declared,
        signatures: signature_reports,
        openness: manifest.zip(assessment).map(|(m, a)| OpennessReport {
            claimed: m.openness.claimed,
            claimed_wording: m.openness.claimed_wording.clone(),
            claim_source: m.openness.claim_source.clone(),
            achieved: a.achieved,
            mof_class: a.mof_class,
            osai_score: a.osai_score,
            components: Component::ALL
                .iter()
                .map(|&c| {
                    let g = m.openness.components.get(&c);
                    ComponentReport {
                        component: c,
                        grade: m.openness.grade(c),
                        license: g.and_then(|g| g.license.clone()),
                        evidence: g.and_then(|g| g.evidence.clone()),
                        note: g.and_then(|g| g.note.clone()),
                    }
                })
                .collect(),
            unmet: a.unmet,
        }),
        policy_source: opts.policy_source.as_ref().map(|p| p.display().to_string()),
        decision: Decision {
            outcome,
            findings,
            overrides,
        },
        warnings,
        stats: Stats {
            files: slots.len(),
            hashed_bytes,
            cache_hits: slots.iter().filter(|s| s.cached).count(),
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    };

    match outcome {
        Outcome::Allowed => {}
        Outcome::IntegrityFailure => return Err(Error::Integrity(Box::new(report))),
        Outcome::Malformed => return Err(Error::MalformedModel(Box::new(report))),
        Outcome::Refused => return Err(Error::Refused(Box::new(report))),
    }
    let files = slots
        .into_iter()
        .map(|s| {
            let role = s.role();
            let o = s.opened.expect("allowed implies opened");
            VerifiedFile {
                rel_path: s.report_path,
                size: o.identity.size,
                sha256: s.actual.expect("allowed implies hashed"),
                role: Some(role),
                format: s.entry.as_ref().map(|e| e.format),
                identity: o.identity,
                opened_path: o.opened_path,
                file: o.file,
            }
        })
        .collect();
    Ok(Verification { report, files })
}

/// Find `*.safetensors.index.json` (a listed file that was hashed, or for an unlisted model the
/// file next to the shards) and check it against the validated shard headers.
fn check_safetensors_index(
    root: &Path,
    slots: &[Slot],
    shards: &[(String, SafetensorsHeader)],
    listed: bool,
) -> Option<(String, IndexError)> {
    const SUFFIX: &str = ".safetensors.index.json";
    let bytes_and_path = if listed {
        let s = slots
            .iter()
            .find(|s| s.disk_path.ends_with(SUFFIX) && s.status == FileStatus::Ok)?;
        (
            read_bounded(&s.opened.as_ref()?.file, 50_000_000).ok()?,
            s.disk_path.clone(),
        )
    } else {
        let name = "model.safetensors.index.json";
        let o = open_in_dir(root, name, None).ok()?;
        (read_bounded(&o.file, 50_000_000).ok()?, name.to_string())
    };
    let (bytes, path) = bytes_and_path;
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let result = SafetensorsIndex::parse(&bytes).and_then(|idx| {
        let rel: Vec<(&str, &SafetensorsHeader)> = shards
            .iter()
            .filter_map(|(p, h)| p.strip_prefix(dir.as_str()).map(|r| (r, h)))
            .collect();
        idx.check_shards(&rel)
    });
    result.err().map(|e| (path, e))
}

fn refetch_fix(manifest: Option<&Manifest>) -> String {
    match manifest {
        Some(m) => format!(
            "run `candor pull {}` to fetch the published files again",
            m.id()
        ),
        None => "fetch the file again from its publisher".into(),
    }
}

/// The model card to compare: a listed `model_card` file (already hashed), or for an unlisted
/// model a README.md next to the weights.
fn read_card(
    manifest: Option<&Manifest>,
    root: &Path,
    slots: &[Slot],
    warnings: &mut Vec<String>,
) -> Option<(String, CardInfo)> {
    let (path, bytes) = match manifest {
        Some(_) => {
            let s = slots.iter().find(|s| {
                s.entry
                    .as_ref()
                    .is_some_and(|e| e.role == FileRole::ModelCard)
                    && s.status == FileStatus::Ok
            })?;
            (
                s.report_path.clone(),
                read_bounded(&s.opened.as_ref()?.file, model_card::MAX_CARD_BYTES).ok()?,
            )
        }
        None => {
            let o = open_in_dir(root, "README.md", None).ok()?;
            (
                "README.md".to_string(),
                read_bounded(&o.file, model_card::MAX_CARD_BYTES).ok()?,
            )
        }
    };
    match model_card::parse(&bytes) {
        Ok(info) => Some((path, info)),
        Err(e) => {
            warnings.push(format!("{path}: model card front matter not read: {e}"));
            None
        }
    }
}

impl Manifest {
    /// A self-attested manifest for the model files in `dir` (what `candor manifest init` writes):
    /// sizes and hashes computed here, license, architecture and base models read from GGUF
    /// metadata and the README front matter. Openness is not assessed: only the weights are
    /// graded, from the license.
    pub fn self_attested_from_dir(
        dir: &Path,
        id: &str,
        progress: &dyn Progress,
    ) -> Result<Manifest> {
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let mut paths = weight_files_in(&root)?;
        if paths.is_empty() {
            return Err(Error::Usage(format!(
                "no model files (.gguf, .safetensors) in {}",
                dir.display()
            )));
        }
        paths.extend(companion_files_in(&root));
        let mut opened = Vec::new();
        for p in &paths {
            let o = open_in_dir(&root, p, None).map_err(|e| match e {
                OpenError::Io(e) => Error::io(root.join(p), e),
                other => Error::Usage(format!("{p}: {other}")),
            })?;
            opened.push(o);
        }
        let jobs: Vec<(&str, &File)> = paths
            .iter()
            .map(String::as_str)
            .zip(opened.iter().map(|o| &o.file))
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let hashes = hashing::sha256_files(&jobs, threads, progress);
        let mut files = Vec::new();
        let mut gguf: Option<GgufHeader> = None;
        let mut card = CardInfo::default();
        let mut config_arch: Option<String> = None;
        for ((p, o), h) in paths.iter().zip(&opened).zip(hashes) {
            let (sha256, size) = h.map_err(|e| Error::io(root.join(p), e))?;
            let (role, format) = match p.rsplit_once('.').map(|(_, e)| e) {
                Some("gguf") => (FileRole::Weights, FileFormat::Gguf),
                Some("safetensors") => (FileRole::Weights, FileFormat::Safetensors),
                Some("json") if p.starts_with("tokenizer") => {
                    (FileRole::Tokenizer, FileFormat::Json)
                }
                Some("json") if p == "generation_config.json" => {
                    (FileRole::GenerationConfig, FileFormat::Json)
                }
                Some("json") => (FileRole::Config, FileFormat::Json),
                Some("md") => (FileRole::ModelCard, FileFormat::Text),
                _ if p == "LICENSE" => (FileRole::License, FileFormat::Text),
                _ => {
                    return Err(Error::Usage(format!(
                        "{p}: not a format candor loads (only GGUF and safetensors)"
                    )))
                }
            };
            if role == FileRole::Weights {
                let h = formats::validate_weights(&o.file, p, Some(format)).map_err(|source| {
                    Error::Format {
                        path: root.join(p),
                        source,
                    }
                })?;
                if let (Header::Gguf(h), None) = (h, &gguf) {
                    gguf = Some(h);
                }
            }
            if role == FileRole::ModelCard {
                if let Ok(b) = read_bounded(&o.file, model_card::MAX_CARD_BYTES) {
                    card = model_card::parse(&b).unwrap_or_default();
                }
            }
            if p == "config.json" {
                config_arch = read_bounded(&o.file, MAX_CONFIG_BYTES)
                    .ok()
                    .and_then(|b| config_architecture(&b));
            }
            files.push(FileEntry {
                path: p.clone(),
                size,
                sha256,
                role,
                format,
            });
        }
        let g = |f: fn(&GgufHeader) -> Option<&str>| gguf.as_ref().and_then(f).map(str::to_string);
        let declared = g(GgufHeader::license)
            .or(card.license.clone().filter(|l| l != "other"))
            .or(card.license_name.clone());
        let spdx = match declared.as_deref() {
            Some(d) => {
                let norm = license::normalize(d);
                let mapped = [
                    "Apache-2.0",
                    "MIT",
                    "BSD-3-Clause",
                    "CC-BY-4.0",
                    "CC0-1.0",
                    "LicenseRef-Gemma-Terms-of-Use",
                ]
                .into_iter()
                .find(|s| license::normalize(s) == norm);
                match mapped {
                    Some(s) => s.to_string(),
                    None if license::is_valid_spdx_expression(d) => d.to_string(),
                    None => format!(
                        "LicenseRef-{}",
                        d.chars()
                            .map(|c| if c.is_ascii_alphanumeric() || c == '.' {
                                c
                            } else {
                                '-'
                            })
                            .collect::<String>()
                    ),
                }
            }
            None => "LicenseRef-unknown".to_string(),
        };
        let osi = license::is_osi_approved(&spdx);
        let lic = License {
            name: g(GgufHeader::license_name)
                .or(card.license_name.clone())
                .unwrap_or_else(|| spdx.clone()),
            hf_id: card.license.clone(),
            hf_license_name: card.license_name.clone(),
            url: g(GgufHeader::license_link)
                .or(card.license_link.clone())
                .unwrap_or_else(|| "unknown".into()),
            terms: if osi {
                LicenseTerms::permissive()
            } else {
                LicenseTerms::unknown()
            },
            spdx,
        };
        let mut base_models = card.base_model.clone();
        if let Some(h) = &gguf {
            for b in h.base_models() {
                if let Some(u) = b.repo_url {
                    let id = u
                        .trim_end_matches('/')
                        .rsplitn(3, '/')
                        .take(2)
                        .collect::<Vec<_>>();
                    if id.len() == 2 {
                        let id = format!("{}/{}", id[1], id[0]);
                        if !base_models.iter().any(|x| x.eq_ignore_ascii_case(&id)) {
                            base_models.push(id);
                        }
                    }
                }
            }
        }
        let model = ModelInfo {
            name: g(|h| h.get_str("general.name")).unwrap_or_else(|| id.to_string()),
            publisher: g(|h| h.get_str("general.organization")).unwrap_or_else(|| "unknown".into()),
            architecture: g(GgufHeader::architecture)
                .or(config_arch)
                .unwrap_or_else(|| "unknown".into()),
            version: None,
            parameter_count: None,
            homepage: None,
            base_models,
            base_model_relation: None,
        };
        let mut components = std::collections::BTreeMap::new();
        components.insert(
            Component::ModelParametersFinal,
            ComponentGrade {
                grade: if osi {
                    crate::openness::Grade::Open
                } else {
                    crate::openness::Grade::Partial
                },
                license: None,
                evidence: None,
                note: Some("weights present locally; not checked against a publisher".into()),
            },
        );
        let openness = Openness {
            claimed: Level::Closed,
            claimed_wording: "not recorded (self-attested manifest)".into(),
            claim_source: "candor manifest init".into(),
            assessed_by: Some("candor manifest init".into()),
            assessed_at: None,
            components,
        };
        Ok(Manifest::new(
            id,
            Attestation::SelfAttested,
            model,
            Vec::new(),
            files,
            lic,
            openness,
        ))
    }
}
