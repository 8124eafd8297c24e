//! The CI smoke: real processes under every kind of fault for a fixed set
//! of seeds, and every invariant must hold. A failing seed replays with
//! `cargo run -p drover-chaos -- --seed S --duration 30s`.

use std::time::Duration;

use drover_chaos::campaign::{self, CampaignConfig};
use drover_chaos::harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixed_seeds_hold_every_invariant_under_faults() {
    let binary = harness::drover_binary().expect("the drover binary");
    let seeds: Vec<u64> = std::env::var("DROVER_CHAOS_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    for seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let summary = campaign::run(CampaignConfig {
            seed,
            duration: Duration::from_secs(30),
            nodes: 3,
            workers: 3,
            clients: 2,
            heal_bound: Duration::from_secs(90),
            planted_bugs: String::new(),
            faults: None,
            run_dir: dir.path().to_owned(),
            binary: binary.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the harness failed: {e}"));
        println!("{}", summary.table());
        assert!(
            summary.report.ok(),
            "seed {seed} broke invariants (replay: cargo run -p drover-chaos -- --seed {seed} --duration 30s):\n{}",
            summary.table()
        );
        // The run really exercised the system.
        assert!(
            summary.faults.values().sum::<u64>() >= 3,
            "{}",
            summary.table()
        );
        assert!(
            summary.jobs >= 10 && summary.attempts >= 30,
            "{}",
            summary.table()
        );
    }
}
