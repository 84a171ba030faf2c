//! keel-app: the reference application (the guides' `app/_webserver`).
//!
//! Components `auth`, `brands`, `items`, `orders`, `surveys`, each `routes → service →
//! repository`, plus the application's tasks, watchers and jobs. Built on `keel`.

pub mod auth;
pub mod brands;
pub mod indexes;
pub mod items;
pub mod money;
pub mod orders;
pub mod paging;
pub mod surveys;
