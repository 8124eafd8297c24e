//! The tests test: each bug planted in the coordinators (feature
//! `planted-bugs`, switched on by `DROVER_PLANTED_BUGS`) must be caught by
//! its checker within a fixed seed. If a checker stopped catching its bug,
//! these fail.

use std::time::Duration;

use drover_chaos::campaign::{self, CampaignConfig, Summary};
use drover_chaos::harness;

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
    // Workers paused or cut off past their lease come back and complete
    // with stale tokens; only the fencing check stops them. Whether a
    // resumed worker still holds an unfinished attempt depends on real
    // timing, so a few seeds are tried: one that catches it is enough.
    let mut tables = Vec::new();
    for seed in [3, 4, 5] {
        let summary = run_with(
            "skip-fencing",
            seed,
            40,
            Some(&["pause-worker", "partition-worker"]),
        )
        .await;
        if !summary
            .report
            .of("no completion accepted from a stale token")
            .is_empty()
        {
            return;
        }
        tables.push(format!("seed {seed}:\n{}", summary.table()));
    }
    panic!(
        "the stale completions went unnoticed:\n{}",
        tables.join("\n")
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
