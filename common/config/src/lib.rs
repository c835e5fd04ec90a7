//! Node configuration, parsed once: `cluster.toml` (unknown fields denied) + `LOOM_*` environment
//! overrides (one table, in `env.rs`) + validation whose every error names the field and why.
//! Services receive typed sections of the result and never read the environment themselves.

mod duration;
mod env;
mod model;
mod secret;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use duration::HumanDuration;
pub use env::ENV_OVERRIDES;
pub use model::*;
pub use secret::{Secret, redact_url};

/// Everything that can be wrong with a configuration. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("environment variable {var} (sets `{field}`): {reason}")]
    Env { var: String, field: &'static str, reason: String },
    #[error("`{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl NodeConfig {
    /// Loads the configuration: the file when given (else built-in defaults), then the environment
    /// overrides from `env`, then validation. `env` is passed in so tests never touch the process
    /// environment.
    pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<NodeConfig, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read { path: path.to_owned(), reason: e.to_string() })?;
                NodeConfig::parse_toml(&text).map_err(|reason| ConfigError::Parse { path: path.to_owned(), reason })?
            }
            None => NodeConfig::default(),
        };
        env::apply(&mut config, env)?;
        config.resolve();
        validate::validate(&config)?;
        Ok(config)
    }

    /// Parses TOML text into a configuration without overrides or validation.
    pub fn parse_toml(text: &str) -> Result<NodeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    /// The resolved configuration as TOML, secrets redacted (what `loom config check` prints).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.redacted()).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests;
