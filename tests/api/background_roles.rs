//! `keel serve --role …`: one binary, only the parts asked for.

use crate::helpers::{KeelProcess, every_second_config, http_client};
use crate::support::eventually;

/// Polls /metrics until the runtime probe has taken `samples` one-second samples: a clock
/// inside the process, so "at least that long has passed there" needs no sleep here.
async fn wait_for_probe_samples(address: std::net::SocketAddr, samples: u64) -> String {
    let what = format!("the runtime probe to take {samples} samples");
    eventually(&what, || async {
        let text = http_client()
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        let count = text
            .lines()
            .find(|l| l.starts_with("keel_runtime_scheduling_delay_seconds_hist_count"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0);
        (count >= samples as f64).then_some(text)
    })
    .await
}

#[tokio::test]
async fn an_api_only_process_runs_no_task_while_a_scheduler_process_does() {
    let config = every_second_config();
    let config_dir = config.path().to_str().expect("utf-8 path");
    let scheduler =
        KeelProcess::serve_with(&["--role", "scheduler"], &[("KEEL_CONFIG_DIR", config_dir)]);
    let api = KeelProcess::serve_with(&["--role", "api"], &[("KEEL_CONFIG_DIR", config_dir)]);
    // The control: with the scheduler role the task runs within a couple of seconds.
    scheduler
        .wait_for_line(|line| line.contains("task finished") && line.contains("process-data"))
        .await;
    let address = api.address().await;
    let metrics = wait_for_probe_samples(address, 4).await;
    assert!(!metrics.contains("keel_task_runs_total"), "{metrics}");
    assert!(!api.lines().iter().any(|l| l.contains("task started")));
    assert!(!api.lines().iter().any(|l| l.contains("task scheduled")));
}

#[tokio::test]
async fn a_jobs_only_process_serves_health_and_metrics_but_no_api_routes() {
    let keel = KeelProcess::serve_with(&["--role", "jobs"], &[]);
    let address = keel.address().await;
    let get = |path: &'static str| http_client().get(format!("http://{address}{path}")).send();
    assert_eq!(get("/api/health").await.expect("health").status(), 200);
    assert_eq!(get("/metrics").await.expect("metrics").status(), 200);
    keel.wait_for_line(|line| line.contains("job runner started"))
        .await;
    // Routes of the API role are absent (the test-only ones included).
    assert_eq!(get("/api/items").await.expect("items").status(), 404);
    let echo = http_client()
        .post(format!("http://{address}/__test/echo"))
        .body("{}")
        .send()
        .await
        .expect("echo");
    assert_eq!(echo.status(), 404);
}
