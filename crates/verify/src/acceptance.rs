//! Recorded acceptances of must-accept licenses. `candor license accept MODEL` shows the key
//! terms and records (manifest id, license, time) here; a load of a must-accept model without a
//! matching record is refused. A changed license (another SPDX id) needs a new acceptance.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    cache::{read_json, write_atomically},
    error::{Error, Result},
    manifest::Manifest,
};

pub const ACCEPTANCE_FILE: &str = "license-acceptances.json";
const MAX_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub manifest_id: String,
    /// The license's SPDX expression as recorded in the manifest when accepted.
    pub license: String,
    pub license_url: String,
    /// Seconds since the Unix epoch.
    pub accepted_at: u64,
}

impl Acceptance {
    /// When it was accepted, as people read dates: RFC 3339 in the local time zone (`TZ`, else
    /// the system's).
    pub fn accepted_at_local(&self) -> String {
        i64::try_from(self.accepted_at)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(|t| {
                t.to_zoned(jiff::tz::TimeZone::system())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_else(|| format!("{} s after the Unix epoch", self.accepted_at))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    acceptances: Vec<Acceptance>,
}

#[derive(Debug, Clone, Default)]
pub struct AcceptanceStore {
    path: Option<PathBuf>,
    entries: Vec<Acceptance>,
}

impl AcceptanceStore {
    /// An empty store that is never written (tests, `--no-home`).
    pub fn in_memory() -> Self {
        AcceptanceStore::default()
    }

    /// Load the store in the candor home. An unreadable or corrupt store counts as empty (nothing
    /// accepted), which fails closed.
    pub fn load(home: &Path) -> Self {
        let path = home.join(ACCEPTANCE_FILE);
        let entries = read_json::<StoreFile>(&path, MAX_BYTES)
            .filter(|s| s.version == 1)
            .map(|s| s.acceptances)
            .unwrap_or_default();
        AcceptanceStore {
            path: Some(path),
            entries,
        }
    }

    pub fn is_accepted(&self, manifest: &Manifest) -> bool {
        self.find(manifest).is_some()
    }

    pub fn find(&self, manifest: &Manifest) -> Option<&Acceptance> {
        self.entries
            .iter()
            .find(|a| a.manifest_id == manifest.id() && a.license == manifest.license.expression())
    }

    pub fn entries(&self) -> &[Acceptance] {
        &self.entries
    }

    /// Record acceptance of `manifest`'s license and save the store (atomically).
    pub fn accept(&mut self, manifest: &Manifest) -> Result<&Acceptance> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.entries.retain(|a| a.manifest_id != manifest.id());
        self.entries.push(Acceptance {
            manifest_id: manifest.id().to_string(),
            license: manifest.license.expression(),
            license_url: manifest.license.url.clone(),
            accepted_at: now,
        });
        if let Some(path) = &self.path {
            let body = serde_json::to_vec_pretty(&StoreFile {
                version: 1,
                acceptances: self.entries.clone(),
            })
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            write_atomically(path, &body).map_err(|e| Error::io(path, e))?;
        }
        Ok(self.entries.last().expect("just pushed"))
    }
}
