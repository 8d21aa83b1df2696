//! Ingestion sources as operators manage them: add, list, show, pause, resume, remove;
//! validated, written to the store and to the home's definitions file, and audited. The file
//! (`config/sources.yaml`) is what lets sources survive the loss of the queue database: every
//! listing puts back into the store any definition the file holds and the store lacks.

use std::path::Path;

use fabric_core::source::SourceDef;
use fabric_store::SourceRecord;

use crate::console::Result;
use crate::{Console, EngineError};

/// `text` as an operator reads it: each of `roots` as `<root>`, and the user's home (`$HOME`)
/// as `~`.
pub fn redact_user_paths(text: &str, roots: &[String]) -> String {
    let home = std::env::var("HOME").ok();
    fabric_core::quarantine::redact_paths(text, home.as_deref(), roots)
}

/// Kind of the job that scans a source (its handler is ingestion's).
pub const SCAN_KIND: &str = "scan";

/// The definitions file as written: a list under `sources`.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    sources: Vec<SourceDef>,
}

fn read_file(path: &Path) -> Result<Vec<SourceDef>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(EngineError::Failed(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let file: SourcesFile = serde_yaml_ng::from_str(&text).map_err(|e| {
        EngineError::invalid(
            "sources file",
            format!("{} is not a valid sources file: {e}", path.display()),
        )
    })?;
    Ok(file.sources)
}

/// Writes the definitions atomically (a temporary file renamed over the old one), 0600.
fn write_file(path: &Path, sources: Vec<SourceDef>) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| {
        EngineError::Failed(format!("cannot write {}: {e}", path.display()))
    };
    let text = serde_yaml_ng::to_string(&SourcesFile { sources }).map_err(|e| failed(&e))?;
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(|e| failed(&e))?;
    crate::home::set_mode(&tmp, 0o600).map_err(|e| failed(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(&e))
}

impl Console {
    /// Adds a source: validated (its path must exist), refused when the name is taken,
    /// written to the definitions file and the store, audited.
    pub async fn add_source(&self, def: SourceDef) -> Result<SourceRecord> {
        def.validate()?;
        if !Path::new(&def.path).exists() {
            return Err(EngineError::invalid(
                "path",
                format!("{} does not exist", redact_user_paths(&def.path, &[])),
            ));
        }
        if let Some(p) = &def.retry_policy {
            if self.config().named_policy(p).is_none() {
                let presets: Vec<&str> = fabric_core::retry::RetryPreset::ALL
                    .iter()
                    .map(|p| p.as_str())
                    .collect();
                return Err(EngineError::invalid(
                    "retry_policy",
                    format!(
                        "'{p}' is neither a policy of retry_policies nor a preset ({})",
                        presets.join(", ")
                    ),
                ));
            }
        }
        if self.sources().await?.iter().any(|s| s.def.name == def.name) {
            return Err(EngineError::Conflict(format!(
                "source '{}' exists; remove it first (`fabric sources remove {}`)",
                def.name, def.name
            )));
        }
        if let Some(path) = &self.sources_file {
            let mut all = read_file(path)?;
            all.retain(|d| d.name != def.name);
            all.push(def.clone());
            write_file(path, all)?;
        }
        let name = def.name.clone();
        let target = format!("{} ({} at {})", name, def.source_type.as_str(), def.path);
        self.store().put_source(def, self.now()).await?;
        self.audit("sources.add", target, None).await?;
        Ok(self.store().source(&name).await?)
    }

    /// Every source, by name. Definitions the file holds and the store lacks (after the loss
    /// of the queue database) are put back first.
    pub async fn sources(&self) -> Result<Vec<SourceRecord>> {
        let mut all = self.store().sources().await?;
        if let Some(path) = &self.sources_file {
            let mut healed = false;
            for def in read_file(path)? {
                if !all.iter().any(|s| s.def.name == def.name) {
                    tracing::info!(source = %def.name, "source definition restored from the file");
                    self.store().put_source(def, self.now()).await?;
                    healed = true;
                }
            }
            if healed {
                all = self.store().sources().await?;
            }
        }
        Ok(all)
    }

    /// One source (`NotFound` when unknown).
    pub async fn source(&self, name: &str) -> Result<SourceRecord> {
        self.sources()
            .await?
            .into_iter()
            .find(|s| s.def.name == name)
            .ok_or_else(|| EngineError::NotFound {
                what: "source",
                id: name.to_string(),
            })
    }

    /// Pauses a source (nothing of it is scheduled until it is resumed); `reason` is
    /// required and audited.
    pub async fn pause_source(&self, name: &str, reason: &str) -> Result<SourceRecord> {
        if reason.trim().is_empty() {
            return Err(EngineError::invalid("reason", "a reason is required"));
        }
        self.source(name).await?;
        self.store()
            .set_source_paused(name, Some(reason), self.now())
            .await?;
        self.audit("sources.pause", name.to_string(), Some(reason.into()))
            .await?;
        self.source(name).await
    }

    /// Resumes a paused source.
    pub async fn resume_source(&self, name: &str) -> Result<SourceRecord> {
        self.source(name).await?;
        self.store()
            .set_source_paused(name, None, self.now())
            .await?;
        self.audit("sources.resume", name.to_string(), None).await?;
        self.source(name).await
    }

    /// Asks for a scan of a source now (a `scan` job, even while the source is paused: an
    /// operator asked), re-reading every file with `full`; returns the scan job.
    pub async fn trigger_source(
        &self,
        name: &str,
        full: bool,
        priority: Option<fabric_core::Priority>,
    ) -> Result<fabric_store::Submitted> {
        let source = self.source(name).await?;
        let mut job = fabric_core::NewJob::new(SCAN_KIND);
        job.payload = serde_json::json!({"source": name, "full": full});
        job.source = Some(name.to_string());
        job.priority = priority.unwrap_or(source.def.priority);
        let submitted = self.submit(job).await?;
        self.audit(
            "sources.trigger",
            name.to_string(),
            full.then(|| "full".to_string()),
        )
        .await?;
        Ok(submitted)
    }

    /// Removes a source's definition (file and store) and state, and with `purge_docs` its
    /// documents (how many: `Some(n)`); its jobs stay.
    pub async fn remove_source(&self, name: &str, purge_docs: bool) -> Result<Option<u64>> {
        self.source(name).await?;
        if let Some(path) = &self.sources_file {
            let mut all = read_file(path)?;
            all.retain(|d| d.name != name);
            write_file(path, all)?;
        }
        self.store().remove_source(name).await?;
        let purged = if purge_docs {
            Some(self.store().docs().remove_source_documents(name).await?)
        } else {
            None
        };
        self.audit(
            "sources.remove",
            name.to_string(),
            purged.map(|n| format!("{n} documents deleted")),
        )
        .await?;
        Ok(purged)
    }
}
