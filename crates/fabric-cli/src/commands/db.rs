//! `fabric db check|backup|list-backups|restore|vacuum|migrate`.

use std::process::ExitCode;

use anyhow::Context as _;
use fabric_engine::console::Backup;
use fabric_store::sqlite;
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
            if !file.is_file() {
                return Err(Usage(format!("{}: no such backup file", file.display())).into());
            }
            ctx.ensure_home()?;
            // Held until the new store is in place and migrated: no daemon of this home runs,
            // and none can start meanwhile.
            let _lock = ctx.home.lock_exclusive().map_err(|e| {
                anyhow::anyhow!("refusing to restore: {e}; stop them first (`fabric stop --all`)")
            })?;
            let checked = check_backup(&file)?;
            let db = ctx.home.db_path(&ctx.config);
            // Copied first: the slow part, done before the live store is touched.
            let tmp = db.with_extension("restore-tmp");
            std::fs::copy(&file, &tmp).with_context(|| format!("copy {}", file.display()))?;
            fabric_engine::home::set_mode(&tmp, 0o600)?;
            let swapped = swap_in(ctx, &tmp, &db);
            if swapped.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            let saved = swapped?;
            let (from, to) = fabric_engine::migrate_store(&ctx.config, &ctx.home)
                .await
                .with_context(|| format!("migrate the restored store {}", db.display()))?;
            let console = ctx.console().await?;
            let jobs = console.counts().await?.total();
            console
                .record(
                    "db.restore",
                    &file.display().to_string(),
                    (from != to)
                        .then(|| format!("migrated from schema {from} to {to}"))
                        .as_deref(),
                )
                .await?;
            print(
                f,
                &json!({
                    "restored_from": file,
                    "previous_saved_to": saved,
                    "jobs": jobs,
                    "schema_from": checked.schema_version,
                    "schema_to": to,
                }),
                || {
                    format!(
                        "restored {} ({jobs} jobs){}{}",
                        file.display(),
                        if from != to {
                            format!("; migrated from schema {from} to {to}")
                        } else {
                            String::new()
                        },
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

/// Saves the live store `db` aside (if there is one) and puts `tmp` in its place.
fn swap_in(
    ctx: &Ctx,
    tmp: &std::path::Path,
    db: &std::path::Path,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let saved = if db.exists() {
        Some(save_aside(ctx)?)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    std::fs::rename(tmp, db).with_context(|| format!("replace {}", db.display()))?;
    Ok(saved)
}

/// Backs the live store up into `backups/` with `fabric db backup` in a child process: once
/// it has exited, none of its connections to the live files is left to write into them (or
/// delete their `-wal`) after the swap, as a store closed in this process could (its
/// threads close their connections when they get to it).
fn save_aside(ctx: &Ctx) -> anyhow::Result<std::path::PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let to = ctx.home.backups().join(format!("queue-{stamp}.db"));
    let exe = std::env::current_exe().context("cannot find the fabric executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["db", "backup", "--to"])
        .arg(&to)
        .env("FABRIC_HOME", ctx.home.root());
    if let Some(c) = &ctx.global.config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .output()
        .context("cannot run `fabric db backup` to save the current store aside")?;
    if !out.status.success() {
        anyhow::bail!(
            "cannot save the current store aside, so it was not replaced: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(to)
}

/// Checks a backup without changing it: a sound Fabric store at this fabric's schema
/// version or an older one (migrated after the restore).
fn check_backup(file: &std::path::Path) -> anyhow::Result<sqlite::FileCheck> {
    let checked = sqlite::inspect(file).map_err(|e| {
        Usage(format!(
            "{}: not a usable Fabric store: {e}",
            file.display()
        ))
    })?;
    if checked.integrity != ["ok"] {
        anyhow::bail!(
            "{} fails its integrity check: {}",
            file.display(),
            checked.integrity.join("; ")
        );
    }
    if checked.schema_version > checked.current_version {
        return Err(Usage(format!(
            "{}: schema version {} is newer than this fabric knows ({}); upgrade fabric",
            file.display(),
            checked.schema_version,
            checked.current_version
        ))
        .into());
    }
    Ok(checked)
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
