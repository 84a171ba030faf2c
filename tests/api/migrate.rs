//! `keel migrate`: the declared indexes are created once; a second run changes nothing.

use crate::helpers::keel_command;

async fn migrate(work_dir: &tempfile::TempDir) -> (Option<i32>, String) {
    let output = keel_command(&["migrate"], work_dir)
        .output()
        .await
        .expect("running keel migrate");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code(), format!("{stdout}\n{stderr}"))
}

#[tokio::test]
async fn migrate_creates_the_declared_indexes_once_and_then_is_a_no_op() {
    let work_dir = tempfile::tempdir().expect("temporary work directory");

    let (code, output) = migrate(&work_dir).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("created users.email_1"), "{output}");
    assert!(!output.contains("migrate: 0 created"), "{output}");

    let (code, output) = migrate(&work_dir).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("migrate: 0 created"), "{output}");
}

#[tokio::test]
async fn a_second_process_on_a_served_data_directory_is_refused_naming_the_server() {
    // Two processes writing one embedded store: the server's writer would never enforce an
    // index the second one creates. The second opener is refused and told who holds it.
    let server = crate::helpers::KeelProcess::serve(&[]);
    server.address().await;
    let (code, output) = migrate(&server.work_dir).await;
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("is in use by process"), "{output}");
    assert!(output.contains(&server.pid().to_string()), "{output}");
}
