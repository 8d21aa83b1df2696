//! `fabric db check|backup|list-backups|restore|vacuum|migrate`.

use std::process::ExitCode;

use anyhow::Context as _;
use fabric_engine::console::Backup;
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use serde_json::json;

use crate::cli::DbCmd;
use crate::context::{Ctx, Usage};
use crate::output::{print, table, time};

pub async fn run(ctx: &Ctx, cmd: DbCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    match cmd {
        DbCmd::Check => {
            let lines = ctx.console().await?.db_check().await?;
            let ok = lines == ["ok"];
            print(f, &json!({"ok": ok, "result": lines}), || {
                if ok {
                    "integrity ok".into()
                } else {
                    format!("integrity check FAILED:\n{}", lines.join("\n"))
                }
            })?;
            if !ok {
                return Ok(ExitCode::from(1));
            }
        }
        DbCmd::Backup { to } => {
            if let Some(p) = &to {
                if p.exists() {
                    return Err(
                        Usage(format!("--to {}: the file already exists", p.display())).into(),
                    );
                }
            }
            let path = ctx
                .console()
                .await?
                .db_backup(to, &ctx.home.backups())
                .await?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            print(f, &json!({"path": path, "bytes": bytes}), || {
                format!("backup written: {} ({bytes} bytes)", path.display())
            })?;
        }
        DbCmd::ListBackups => {
            let backups = list_backups(ctx)?;
            print(f, &backups, || {
                table(
                    &["path", "bytes", "modified"],
                    backups
                        .iter()
                        .map(|b| vec![b.path.clone(), b.bytes.to_string(), b.modified.clone()])
                        .collect(),
                )
            })?;
        }
        DbCmd::Restore { file } => {
            if ctx.config.store.backend != "sqlite" {
                return Err(Usage(format!(
                    "db restore replaces the embedded SQLite store; a {} store is restored \
                     with its own tools (pg_restore)",
                    ctx.config.store.backend
                ))
                .into());
            }
            if let Some(pid) = ctx.home.running_pid() {
                anyhow::bail!("refusing to restore while the daemon runs (pid {pid}); run `fabric stop` first");
            }
            if !file.is_file() {
                return Err(Usage(format!("{}: no such backup file", file.display())).into());
            }
            // Check the backup before replacing anything.
            let check = SqliteStore::open(&file, SqliteOptions::default()).map_err(|e| {
                Usage(format!(
                    "{}: not a usable Fabric store: {e}",
                    file.display()
                ))
            })?;
            let lines = check.integrity_check().await?;
            let counts = check.counts().await?;
            drop(check);
            if lines != ["ok"] {
                anyhow::bail!(
                    "{} fails its integrity check: {}",
                    file.display(),
                    lines.join("; ")
                );
            }
            ctx.ensure_home()?;
            let db = ctx.home.db_path(&ctx.config);
            // Copied first: saving the current store aside prunes backups/ (`backups.keep`),
            // which may hold the very file being restored.
            let tmp = db.with_extension("restore-tmp");
            std::fs::copy(&file, &tmp).with_context(|| format!("copy {}", file.display()))?;
            fabric_engine::home::set_mode(&tmp, 0o600)?;
            let mut saved = None;
            if db.exists() {
                let console = ctx.console().await?;
                console.store().checkpoint().await?;
                let aside = console.db_backup(None, &ctx.home.backups()).await?;
                saved = Some(aside);
            }
            for suffix in ["-wal", "-shm"] {
                let mut p = db.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(&p);
            }
            std::fs::rename(&tmp, &db).with_context(|| format!("replace {}", db.display()))?;
            ctx.console()
                .await?
                .record("db.restore", &file.display().to_string(), None)
                .await?;
            print(
                f,
                &json!({"restored_from": file, "previous_saved_to": saved, "jobs": counts.total()}),
                || {
                    format!(
                        "restored {} ({} jobs){}",
                        file.display(),
                        counts.total(),
                        saved
                            .as_ref()
                            .map(|s| format!("; the previous store was saved to {}", s.display()))
                            .unwrap_or_default()
                    )
                },
            )?;
        }
        DbCmd::Vacuum => {
            ctx.console().await?.db_vacuum().await?;
            print(f, &json!({"vacuumed": true}), || "vacuum done".into())?;
        }
        DbCmd::Migrate => {
            ctx.ensure_home()?;
            let (from, to) = fabric_engine::migrate_store(&ctx.config, &ctx.home).await?;
            let backend = ctx.config.store.backend.clone();
            let applied = to.saturating_sub(from);
            ctx.console()
                .await?
                .record(
                    "db.migrate",
                    &format!("{backend} schema {from} -> {to}"),
                    None,
                )
                .await?;
            print(
                f,
                &json!({"backend": backend, "from": from, "to": to, "applied": applied}),
                || {
                    if applied == 0 {
                        format!("schema already at version {to}; nothing to do")
                    } else {
                        format!("schema migrated from version {from} to {to} ({applied} applied)")
                    }
                },
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_backups(ctx: &Ctx) -> anyhow::Result<Vec<Backup>> {
    let dir = ctx.home.backups();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    for e in entries {
        let e = e?;
        let meta = e.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        out.push(Backup {
            path: e.path().display().to_string(),
            bytes: meta.len(),
            modified: time(modified),
        });
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified));
    Ok(out)
}
