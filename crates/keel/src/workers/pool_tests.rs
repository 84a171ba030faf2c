//! Tests of the worker pool (no store needed).

use std::sync::Barrier;

use super::*;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_job_returns_its_value_to_the_caller() {
    let pool = WorkerPool::new(2, 8, LONG);
    let value = pool.run(|_| (1..=10u64).product::<u64>()).await;
    assert_eq!(value.ok(), Some(3_628_800));
    assert_eq!(pool.stats().done, 1);
}

#[tokio::test]
async fn a_full_queue_is_refused_as_busy() {
    let pool = WorkerPool::new(1, 1, LONG);
    let gate = Arc::new(Barrier::new(2));
    let blocker = {
        let gate = Arc::clone(&gate);
        pool.submit(move |_| {
            gate.wait();
        })
        .expect("the first job fits")
    };
    // Wait until the thread has taken the blocker, so the queue's single slot is free.
    poll_until(|| pool.stats().running == 1).await;
    let queued = pool.submit(|_| ()).expect("one job fits in the queue");
    let refused = pool.submit(|_| ());
    assert!(matches!(refused, Err(WorkerError::Busy { capacity: 1 })));
    assert_eq!(pool.stats().rejected, 1);
    gate.wait();
    assert!(blocker.await.is_ok());
    assert!(queued.await.is_ok());
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_the_pool_keeps_its_threads() {
    let pool = WorkerPool::new(2, 16, LONG);
    for _ in 0..4 {
        let failed = pool.run(|_| -> u32 { panic!("boom in a job") }).await;
        match failed {
            Err(WorkerError::Panicked(message)) => assert!(message.contains("boom in a job")),
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
    // Both threads still answer: two jobs that each wait for the other can only finish when
    // two threads run them at the same time.
    let meet = Arc::new(Barrier::new(2));
    let a = {
        let meet = Arc::clone(&meet);
        pool.submit(move |_| meet.wait().is_leader())
    };
    let b = {
        let meet = Arc::clone(&meet);
        pool.submit(move |_| meet.wait().is_leader())
    };
    let (a, b) = (a.expect("queue has room"), b.expect("queue has room"));
    let leaders = [a.await, b.await]
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(leaders, 1);
    let stats = pool.stats();
    assert_eq!((stats.failed, stats.done, stats.threads), (4, 2, 2));
}

#[tokio::test]
async fn an_overrunning_job_times_out_for_its_caller_and_is_told_to_stop() {
    let pool = WorkerPool::new(1, 4, LONG);
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let handle = {
        let saw_cancel = Arc::clone(&saw_cancel);
        pool.submit_with_timeout(Duration::from_millis(20), move |ctx| {
            // A cooperative long job: runs until told to stop.
            while !ctx.is_cancelled() {
                std::thread::yield_now();
            }
            saw_cancel.store(true, Ordering::Relaxed);
        })
        .expect("queue has room")
    };
    assert!(matches!(handle.await, Err(WorkerError::Timeout(_))));
    assert_eq!(pool.stats().timed_out, 1);
    // The abandoned job saw the cancellation and gave its thread back.
    poll_until(|| saw_cancel.load(Ordering::Relaxed)).await;
    assert_eq!(pool.run(|_| 7).await.ok(), Some(7));
}

#[tokio::test]
async fn a_job_whose_caller_left_before_it_started_is_skipped() {
    let pool = WorkerPool::new(1, 4, LONG);
    let gate = Arc::new(Barrier::new(2));
    let blocker = {
        let gate = Arc::clone(&gate);
        pool.submit(move |_| {
            gate.wait();
        })
        .expect("queue has room")
    };
    let ran = Arc::new(AtomicBool::new(false));
    let unwanted = {
        let ran = Arc::clone(&ran);
        pool.submit(move |_| ran.store(true, Ordering::Relaxed))
            .expect("queue has room")
    };
    drop(unwanted);
    gate.wait();
    assert!(blocker.await.is_ok());
    poll_until(|| pool.stats().skipped == 1).await;
    assert!(!ran.load(Ordering::Relaxed));
}

#[tokio::test]
async fn shutdown_finishes_queued_jobs_then_refuses_new_ones() {
    let pool = WorkerPool::new(2, 64, LONG);
    let handles: Vec<_> = (0..20u64)
        .map(|i| pool.submit(move |_| i * 2).expect("queue has room"))
        .collect();
    assert!(pool.shutdown(LONG).await);
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.expect("queued jobs still run");
    }
    assert_eq!(sum, (0..20u64).map(|i| i * 2).sum::<u64>());
    assert!(matches!(pool.submit(|_| ()), Err(WorkerError::ShutDown)));
}

/// Polls a condition with a deadline instead of sleeping a guessed time.
async fn poll_until(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
