//! `keel users grant-admin EMAIL` and `keel users revoke-admin EMAIL`: who may open the ops
//! console (`/ops`). The user must have registered; the change is audited in `ops_audit`
//! (actor `cli:USER@HOST`) and takes effect on the user's next request.

use std::process::ExitCode;

use clap::Subcommand;
use keel_app::auth::model::{ADMIN_ROLE, Email};
use keel_app::auth::repository::UserRepository;
use keel_app::ops::repository::OpsRepository;
use keel_app::ops::service::{Actor, record_audit};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Give a registered user the admin role (the ops console). Exit 2 if no user has EMAIL.
    GrantAdmin {
        /// The user's email.
        email: String,
    },
    /// Take the admin role away. Exit 2 if no user has EMAIL.
    RevokeAdmin {
        /// The user's email.
        email: String,
    },
}

pub fn run(global: &Global, command: UsersCommand) -> ExitCode {
    let (raw, granted) = match &command {
        UsersCommand::GrantAdmin { email } => (email.clone(), true),
        UsersCommand::RevokeAdmin { email } => (email.clone(), false),
    };
    let Ok(email) = Email::parse(&raw) else {
        eprintln!("keel users: {raw:?} is not a valid email address");
        return ExitCode::from(2);
    };
    super::offline::run(global, move |platform, _background| async move {
        let store = platform.store().clone();
        let found = UserRepository::new(&store)
            .set_role(&email, ADMIN_ROLE, granted)
            .await?;
        let action = if granted {
            "users.grant-admin"
        } else {
            "users.revoke-admin"
        };
        let actor = Actor {
            id: None,
            name: cli_actor(),
            ip: None,
        };
        let outcome = if found { "success" } else { "failure" };
        let detail = (!found).then(|| "no user with this email".to_owned());
        record_audit(
            &OpsRepository::new(&store),
            &actor,
            action,
            email.as_str(),
            outcome,
            detail,
        )
        .await;
        if !found {
            eprintln!(
                "keel users: no user with email {email} (register first, or list it in ops.admin_emails)"
            );
            return Ok(ExitCode::from(2));
        }
        if granted {
            println!("{email}: admin granted");
        } else {
            println!("{email}: admin revoked");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `cli:USER@HOST`, for the audit trail.
fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    let host = hostname::get().map_or_else(
        |_| "unknown-host".to_owned(),
        |h| h.to_string_lossy().into_owned(),
    );
    format!("cli:{user}@{host}")
}
