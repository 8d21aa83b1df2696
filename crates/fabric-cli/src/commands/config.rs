//! `fabric config validate|show`.

use std::process::ExitCode;

use fabric_engine::FabricHome;

use crate::cli::{ConfigCmd, Format, Global};
use crate::context::load_config;
use crate::output::print;

pub fn run(global: Global, cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    let home = FabricHome::resolve(None);
    // An invalid config is a usage error listing every problem (exit 2).
    let config = load_config(&home, &global)?;
    let path = global.config.clone().unwrap_or_else(|| home.config_file());
    match cmd {
        ConfigCmd::Validate => {
            let source = if path.exists() {
                path.display().to_string()
            } else {
                format!("defaults ({} does not exist)", path.display())
            };
            print(
                global.format,
                &serde_json::json!({"valid": true, "path": path, "problems": []}),
                || format!("config ok: {source}"),
            )?;
        }
        ConfigCmd::Show => {
            // Every key named like a secret and every connection-string password masked.
            let shown = config.display_value();
            let format = if global.format == Format::Table {
                Format::Yaml
            } else {
                global.format
            };
            print(format, &shown, String::new)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
