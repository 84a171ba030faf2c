//! `keel migrate`: creates every index the application declares (the repositories' `indexes()`
//! and the background work's), idempotently. `serve` does the same at start unless
//! `database.migrate_on_start = false`; this command is for deployments that turn that off and
//! migrate once per release instead.

use std::process::ExitCode;

use anyhow::Context;

use super::Global;

pub fn run(global: &Global) -> ExitCode {
    super::offline::run(global, |platform, _background| async move {
        let report = keel_app::indexes::create_all(platform.store())
            .await
            .context("creating the declared indexes")?;
        for index in &report.created {
            println!("created {}.{}", index.collection, index.index);
        }
        println!(
            "migrate: {} created, {} unchanged",
            report.created.len(),
            report.unchanged.len()
        );
        Ok(ExitCode::SUCCESS)
    })
}
