//! The tests test: each bug planted in the coordinators (feature
//! `planted-bugs`, switched on by `DROVER_PLANTED_BUGS`) must be caught by
//! its checker within a fixed seed. If a checker stopped catching its bug,
//! these fail.

use std::time::Duration;

use drover_chaos::campaign::{self, CampaignConfig, Summary};
use drover_chaos::directed::{self, DirectedConfig};
use drover_chaos::harness;
use drover_chaos::observation::{EventRecord, EventType, Observation};

/// One cluster at a time: the machine is small.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_with(bug: &str, seed: u64, duration_s: u64, faults: Option<&[&str]>) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let summary = campaign::run(CampaignConfig {
        seed,
        duration: Duration::from_secs(duration_s),
        nodes: 3,
        workers: 3,
        clients: 2,
        heal_bound: Duration::from_secs(60),
        planted_bugs: bug.to_owned(),
        faults: faults.map(|f| f.iter().map(|s| (*s).to_owned()).collect()),
        run_dir: dir.path().to_owned(),
        binary: harness::drover_binary().expect("the drover binary"),
    })
    .await
    .expect("the harness ran");
    println!("{}", summary.table());
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skipped_fencing_check_is_caught() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Random pauses and cuts catch this only when a worker's attempt ends
    // before it hears that its lease is gone, which depends on real timing;
    // the directed run makes that happen, with seconds of margin.
    let dir = tempfile::tempdir().unwrap();
    let summary = directed::cut_off_past_its_lease(DirectedConfig {
        planted_bugs: "skip-fencing".to_owned(),
        run_dir: dir.path().to_owned(),
        binary: harness::drover_binary().expect("the drover binary"),
    })
    .await
    .expect("the harness ran");
    println!("{}", summary.table());
    assert!(
        !summary
            .report
            .of("no completion accepted from a stale token")
            .is_empty(),
        "the stale completion went unnoticed:\n{}",
        summary.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_granted_over_a_live_lease_is_caught() {
    let _one = ONE_AT_A_TIME.lock().await;
    let summary = run_with("double-lease", 2, 15, Some(&[])).await;
    assert!(
        !summary.report.of("no task leased twice at once").is_empty(),
        "the double lease went unnoticed:\n{}",
        summary.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_bug_the_cut_off_worker_is_fenced() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The control of the directed run: the same timeline against sound
    // coordinators. The cut-off worker's old token is refused and only the
    // second lease's completion is accepted.
    let dir = tempfile::tempdir().unwrap();
    let summary = directed::cut_off_past_its_lease(DirectedConfig {
        planted_bugs: String::new(),
        run_dir: dir.path().to_owned(),
        binary: harness::drover_binary().expect("the drover binary"),
    })
    .await
    .expect("the harness ran");
    let table = summary.table();
    println!("{table}");
    assert!(summary.report.ok(), "{table}");
    let observation = Observation::read(&summary.observation).unwrap();
    let [job] = observation.jobs.as_slice() else {
        panic!("one job: {table}");
    };
    assert_eq!(job.state, "succeeded", "{table}");
    let events: Vec<&EventRecord> = job.task_events().collect();
    let leases: Vec<&EventRecord> = events
        .iter()
        .filter(|e| e.kind == EventType::Leased)
        .copied()
        .collect();
    let [first, second] = leases.as_slice() else {
        panic!("two leases: {events:#?}");
    };
    assert_ne!(first.worker, second.worker, "{events:#?}");
    assert!(
        events.iter().any(|e| e.kind == EventType::StaleRejected
            && e.worker == first.worker
            && e.token == first.token),
        "the cut-off worker's old token was not refused: {events:#?}"
    );
    let accepted: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == EventType::Succeeded)
        .map(|e| e.token)
        .collect();
    assert_eq!(accepted, [second.token], "{events:#?}");
}
