//! docs/deploy.md is the operator's reference: it must name every configuration key with its
//! environment variable, and every file under deploy/.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{read_repo_file, repo_root};

/// Every leaf key of the configuration (`server.port`, `secrets.vault.addr`, …).
fn configuration_keys() -> BTreeSet<String> {
    let defaults = serde_json::to_value(keel::config::Config::default()).expect("serializes");
    let mut keys = BTreeSet::new();
    let mut stack = vec![(String::new(), defaults)];
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    stack.push((child_path, child));
                }
            }
            _ if path == "env" => {}
            _ => {
                keys.insert(path);
            }
        }
    }
    keys
}

#[test]
fn docs_reference_names_every_configuration_key() {
    let docs = read_repo_file("docs/deploy.md");
    let keys = configuration_keys();
    assert!(keys.len() > 30, "found the keys: {keys:?}");
    for key in keys {
        let variable = format!("KEEL_{}", key.replace('.', "__").to_ascii_uppercase());
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("docs/deploy.md has no reference row for `{key}`"));
        assert!(
            row.contains(&format!("`{variable}")),
            "the row of {key} lacks {variable}"
        );
    }
}

#[test]
fn docs_mention_every_deploy_file() {
    let docs = read_repo_file("docs/deploy.md");
    let entries = std::fs::read_dir(repo_root().join("deploy")).expect("deploy/");
    for entry in entries {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name == "secrets" {
            assert!(docs.contains("deploy/secrets/generate.sh"));
            continue;
        }
        assert!(
            docs.contains(&format!("deploy/{name}")),
            "docs/deploy.md never names deploy/{name}"
        );
    }
}
