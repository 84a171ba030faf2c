//! Merging the configuration layers and reporting every problem at once.
//!
//! The `config` crate merges files and overrides; serde would then stop at the first bad value.
//! An operator fixing a deployment wants the whole list, so each value present in the merged
//! tree is checked on its own (deserialized alone over the defaults) and every failure is kept
//! with its key path and the layer it came from. Only when all values pass is the whole `Config`
//! built and its cross-field rules (`Config::validate`) checked.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use config::{File, FileFormat, Value, ValueKind};

use super::{Config, Environment};

/// Keys whose value is a secret: readable from `KEEL_X__Y_FILE`, never echoed in an error.
use crate::secrets::startup::SECRET_KEYS;
use crate::tasks::env_spelling;
/// Tables keyed by names the operator chooses (`[tasks.NAME]`): each entry is checked as one
/// value, since no default lists the names.
const OPEN_TABLES: &[&str] = &["tasks"];
/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["server.trusted_proxies", "server.cors_origins"];

/// One thing wrong with the configuration: `server.port: must be 1..=65535`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where the layers come from. `from_process` reads the real environment; tests pass their own.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory holding `default.toml`, `{env}.toml`, `local.toml`.
    pub config_dir: PathBuf,
    /// True when the user named the directory: then it must exist.
    pub config_dir_required: bool,
    /// The environment variables to read (`KEEL_ENV`, `KEEL_SECTION__KEY[_FILE]`).
    pub env_vars: Vec<(String, String)>,
    /// Command-line flags as `(key path, value)`, the last and strongest layer.
    pub overrides: Vec<(String, String)>,
}

impl LoadOptions {
    pub fn from_process(config_dir: Option<PathBuf>) -> Self {
        Self {
            config_dir_required: config_dir.is_some(),
            config_dir: config_dir.unwrap_or_else(|| PathBuf::from("config")),
            env_vars: std::env::vars().collect(),
            overrides: Vec::new(),
        }
    }

    pub fn with_override(mut self, key: &str, value: impl ToString) -> Self {
        self.overrides.push((key.to_owned(), value.to_string()));
        self
    }
}

/// Loads, merges and validates the configuration; `Err` lists every problem found.
pub fn load(options: &LoadOptions) -> Result<Config, ConfigError> {
    let env = match options.env_vars.iter().find(|(name, _)| name == "KEEL_ENV") {
        None => Environment::default(),
        Some((_, value)) => value
            .parse()
            .map_err(|e: String| ConfigError::Invalid(vec![Problem::new("env (KEEL_ENV)", e)]))?,
    };
    let mut problems = Vec::new();
    let dir = &options.config_dir;
    if options.config_dir_required && !dir.is_dir() {
        problems.push(Problem::new(
            "config_dir",
            format!("{} is not a directory", dir.display()),
        ));
    }

    let mut builder = config::Config::builder();
    for name in [
        "default".to_owned(),
        env.as_str().to_owned(),
        "local".to_owned(),
    ] {
        let path = dir.join(format!("{name}.toml"));
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(false));
    }
    let environment = environment_layer(&options.env_vars, &mut problems);
    let file_tasks = if environment.iter().any(|(key, _)| key.starts_with("tasks.")) {
        task_names(&builder)
    } else {
        Vec::new()
    };
    for (key, value) in environment {
        let key = with_file_task_name(key, &file_tasks);
        builder = set(builder, &key, value, &mut problems);
    }
    for (key, value) in &options.overrides {
        builder = set(builder, key, Value::from(value.as_str()), &mut problems);
    }
    let merged = match builder.build() {
        Ok(merged) => merged,
        Err(e) => {
            problems.push(Problem::new(dir.display().to_string(), e.to_string()));
            return Err(ConfigError::Invalid(problems));
        }
    };

    check_each_value(&merged.cache, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let mut config: Config = merged
        .try_deserialize()
        .map_err(|e| ConfigError::Invalid(vec![Problem::new("config", describe(&e))]))?;
    config.env = env;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn set(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    key: &str,
    value: Value,
    problems: &mut Vec<Problem>,
) -> config::ConfigBuilder<config::builder::DefaultState> {
    match builder.clone().set_override(key, value) {
        Ok(builder) => builder,
        Err(e) => {
            problems.push(Problem::new(key, format!("is not a valid key: {e}")));
            builder
        }
    }
}

/// `KEEL_SERVER__PORT=8080` → (`server.port`, "8080"). Only `KEEL_<SECTION>__<KEY>` names are
/// configuration; other `KEEL_*` variables (`KEEL_ENV`, `KEEL_TEST_MONGODB_URL`) belong to
/// someone else and are left alone.
fn environment_layer(
    vars: &[(String, String)],
    problems: &mut Vec<Problem>,
) -> Vec<(String, Value)> {
    let mut layer: Vec<(String, Value, String)> = Vec::new();
    let mut sorted: Vec<&(String, String)> = vars.iter().collect();
    sorted.sort();
    for (name, raw) in sorted {
        let Some(path) = name.strip_prefix("KEEL_") else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let key = path
            .split("__")
            .collect::<Vec<_>>()
            .join(".")
            .to_ascii_lowercase();
        if key.split('.').any(str::is_empty) {
            problems.push(Problem::new(
                name.as_str(),
                "is not a KEEL_SECTION__KEY name",
            ));
            continue;
        }
        let (key, value) = match key.strip_suffix("_file") {
            Some(secret_key) if SECRET_KEYS.contains(&secret_key) => {
                match read_secret_file(name, Path::new(raw)) {
                    Ok(value) => (secret_key.to_owned(), Value::from(value)),
                    Err(message) => {
                        problems.push(Problem::new(secret_key, message));
                        continue;
                    }
                }
            }
            _ if LIST_KEYS.contains(&key.as_str()) => {
                let items: Vec<String> = raw
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                (key, Value::from(items))
            }
            _ => (key, Value::from(raw.as_str())),
        };
        if let Some((_, _, first)) = layer.iter().find(|(k, _, _)| *k == key) {
            problems.push(Problem::new(
                key.as_str(),
                format!("set by both {first} and {name}; keep one"),
            ));
            continue;
        }
        layer.push((key, value, name.clone()));
    }
    layer.into_iter().map(|(k, v, _)| (k, v)).collect()
}

/// The task tables the files name (`process-data`); none if the files do not load (the full
/// build reports why). The files are read a second time for it, so only when a `KEEL_TASKS__`
/// variable is set.
fn task_names(files: &config::ConfigBuilder<config::builder::DefaultState>) -> Vec<String> {
    files
        .build_cloned()
        .ok()
        .and_then(|files| files.get_table("tasks").ok())
        .map(|tasks| tasks.into_keys().collect())
        .unwrap_or_default()
}

/// `KEEL_TASKS__PROCESS_DATA__SCHEDULE` gives `tasks.process_data.schedule` (the task's
/// [`env_spelling`]), which is renamed to the files' `tasks.process-data` so that it overrides
/// that table's key (as every environment variable overrides the files) instead of making a
/// table of its own, which the runner would not read while the files' table exists.
fn with_file_task_name(key: String, file_tasks: &[String]) -> String {
    let Some(rest) = key.strip_prefix("tasks.") else {
        return key;
    };
    let (name, field) = rest.split_once('.').unwrap_or((rest, ""));
    if file_tasks.iter().any(|task| task == name) {
        return key;
    }
    match file_tasks.iter().find(|task| env_spelling(task) == name) {
        Some(task) if field.is_empty() => format!("tasks.{task}"),
        Some(task) => format!("tasks.{task}.{field}"),
        None => key,
    }
}

/// A Docker/Swarm secret file: its content minus the trailing newline editors add.
fn read_secret_file(variable: &str, path: &Path) -> Result<String, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {variable} ({}): {e}", path.display()))?;
    let value = content.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{variable} ({}) is empty", path.display()));
    }
    Ok(value.to_owned())
}

/// Walks every value in the merged tree: unknown keys are reported, known ones are
/// deserialized alone so that each bad value yields its own problem.
fn check_each_value(tree: &Value, problems: &mut Vec<Problem>) {
    let (leaves, tables) = known_keys();
    let mut stack: Vec<(String, &Value)> = vec![(String::new(), tree)];
    while let Some((path, value)) = stack.pop() {
        match &value.kind {
            ValueKind::Table(table) if !leaves.contains(&path) && !is_open_entry(&path) => {
                if !path.is_empty() && !tables.contains(&path) {
                    problems.push(unknown(&path, value));
                    continue;
                }
                let mut entries: Vec<_> = table.iter().collect();
                entries.sort_by(|a, b| b.0.cmp(a.0));
                for (key, child) in entries {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    stack.push((child_path, child));
                }
            }
            _ if leaves.contains(&path) || tables.contains(&path) || is_open_entry(&path) => {
                if let Err(e) = check_one(&path, value) {
                    let message = if SECRET_KEYS.contains(&path.as_str()) {
                        "must be a string".to_owned()
                    } else {
                        describe(&e)
                    };
                    problems.push(Problem::new(path, with_origin(message, value)));
                }
            }
            _ => problems.push(unknown(&path, value)),
        }
    }
}

/// `tasks.process-data`: an entry of an open table.
fn is_open_entry(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(parent, _)| OPEN_TABLES.contains(&parent))
}

fn unknown(path: &str, value: &Value) -> Problem {
    Problem::new(path, with_origin("unknown key".to_owned(), value))
}

fn with_origin(message: String, value: &Value) -> String {
    match value.origin() {
        Some(origin) => format!("{message} (in {origin})"),
        None => message,
    }
}

fn check_one(path: &str, value: &Value) -> Result<Config, config::ConfigError> {
    config::Config::builder()
        .set_override(path, value.clone())?
        .build()?
        .try_deserialize::<Config>()
}

/// The key paths a `Config` has: leaves (`server.port`) and tables (`server`). `env` is not
/// one: it is chosen by `KEEL_ENV` before any file is read.
fn known_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut leaves = BTreeSet::new();
    let mut tables = BTreeSet::new();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut stack = vec![(String::new(), &defaults)];
    while let Some((path, value)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if !path.is_empty() {
                    tables.insert(path.clone());
                }
                for (key, child) in map {
                    if path.is_empty() && key == "env" {
                        continue;
                    }
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    stack.push((child_path, child));
                }
            }
            _ => {
                leaves.insert(path);
            }
        }
    }
    (leaves, tables)
}

/// The reason without the `config` crate's own decorations.
fn describe(error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        config::ConfigError::At { error, .. } => describe(error),
        config::ConfigError::Message(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
