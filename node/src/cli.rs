//! Command-line interface: `run`, `config check`, `version`, and loading the config the same
//! way for each (file from `--config`, else `./cluster.toml` when present, then `LOOM_*`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use loom_config::NodeConfig;

use crate::{EXIT_CONFIG, fatal_line};

#[derive(Parser)]
#[command(name = "loom", about = "Loom actor-system node hosting the shared services", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a node.
    Run(ConfigArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print version, commit and build profile.
    Version,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the resolved form (secrets redacted).
    Check(ConfigArgs),
}

#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// Config file (default: ./cluster.toml when it exists, else built-in defaults).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Loads the configuration for any command; `Err` carries the one-line message.
pub fn load(args: &ConfigArgs) -> Result<(NodeConfig, Option<PathBuf>), String> {
    let path = args.config.clone().or_else(|| {
        let default = PathBuf::from("cluster.toml");
        default.exists().then_some(default)
    });
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let config = NodeConfig::load(path.as_deref(), &env).map_err(|e| e.to_string())?;
    loom_telemetry::logging::parse_filter(&config.log.filter)?;
    Ok((config, path))
}

pub fn config_check(args: ConfigArgs) -> ExitCode {
    match load(&args) {
        Ok((config, path)) => {
            let source = path.map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "# configuration is valid (from {source} and LOOM_* environment)");
            let _ = write!(out, "{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(message) => {
            fatal_line(&message);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

pub fn version() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "loom {} (commit {}, {} build)",
        env!("CARGO_PKG_VERSION"),
        env!("LOOM_GIT_COMMIT"),
        env!("LOOM_BUILD_PROFILE")
    );
    ExitCode::SUCCESS
}
