//! `keel config check`: validate the configuration and print the effective result.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate every layer and print the effective configuration, secrets redacted. Exits 0
    /// when valid, 2 with the list of problems otherwise.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Toml)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Toml,
    Json,
}

pub fn run(global: &Global, command: ConfigCommand) -> ExitCode {
    let ConfigCommand::Check { format } = command;
    let config = match super::load_config(global, &[]) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Secrets serialize as "[REDACTED]": printing the config cannot leak them.
    let rendered = match format {
        Format::Toml => toml::to_string_pretty(&config).map_err(|e| e.to_string()),
        Format::Json => serde_json::to_string_pretty(&config).map_err(|e| e.to_string()),
    };
    match rendered {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keel: cannot render the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}
