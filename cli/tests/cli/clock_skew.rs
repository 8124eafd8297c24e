//! A coordinator whose wall clock is an hour fast (libfaketime; its
//! monotonic clock untouched), as an operator would meet it: it leads while
//! a worker takes two long tasks, then leadership moves to a node with a
//! true clock and the worker is SIGKILLed. The tasks must neither time out
//! early while the fast node leads (an hour-ahead cluster time would end
//! them at once) nor wait an hour for their leases to run out afterwards;
//! they are leased again within the TTL plus an election, and every
//! recorded time is the true one.

use std::time::{Duration, Instant, SystemTime};

use crate::support::{Cluster, leased_by, of_kind, spec_file, wait_for};
use serde_json::Value;

fn naps(name: &str) -> String {
    format!(
        "apiVersion: drover/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  defaults:\n    retries: {{max: 3, backoff: constant, initialDelay: 1s, maxDelay: 1s}}\n    timeout: 10m\n  tasks:\n    - name: nap\n      kind: sleep\n      partitions: {{shards: 2}}\n      config: {{ms: 600000}}\n"
    )
}

fn lead(cluster: &Cluster, id: u64) {
    wait_for(Duration::from_secs(30), || {
        let leader = cluster.status().and_then(|s| s["leader"].as_u64());
        if leader == Some(id) {
            return Some(());
        }
        let _ = cluster.cli(&["cluster", "transfer-leader", &id.to_string()]);
        std::thread::sleep(Duration::from_millis(300));
        None
    });
}

/// Seconds between an event's RFC 3339 time and this machine's (true)
/// clock.
fn skew_s(event: &Value) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(event["at"].as_str().unwrap()).unwrap();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (at.timestamp_millis() - now_ms) / 1000
}

#[test]
fn an_hour_fast_coordinator_neither_hastens_timeouts_nor_stalls_lease_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with_clock(dir.path(), 3, 0, "+1h");
    cluster.short_leases();
    lead(&cluster, 1);

    let mut held = cluster.worker("held", 2, &[]);
    let spec = spec_file(dir.path(), "naps.yaml", &naps("naps"));
    let job = cluster.json(&["job", "submit", &spec, "--json"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), || {
        (leased_by(&cluster.job(&job), "held") == 2).then_some(())
    });
    // Several ticks under the fast leader: the 10-minute timeouts do not
    // fire, and the leases stay with their live worker.
    std::thread::sleep(Duration::from_secs(5));
    let status = cluster.job(&job);
    assert_eq!(leased_by(&status, "held"), 2, "{status:#}");
    let events = cluster.events(&job);
    assert!(of_kind(&events, "task_timed_out").is_empty(), "{events:#?}");
    assert!(
        of_kind(&events, "task_lease_expired").is_empty(),
        "{events:#?}"
    );

    // Leadership moves to a node with a true clock; the worker dies.
    lead(&cluster, 2);
    held.kill9();
    let killed = Instant::now();
    let _rescuer = cluster.worker("rescuer", 2, &[]);
    wait_for(Duration::from_secs(90), || {
        (leased_by(&cluster.job(&job), "rescuer") == 2).then_some(())
    });
    let took = killed.elapsed();
    println!("leased again {} ms after the kill", took.as_millis());
    // 3 s leases, then a lease call: seconds, not the hour the fast clock
    // would have added.
    assert!(took < Duration::from_secs(30), "{took:?}");

    let events = cluster.events(&job);
    let expired = of_kind(&events, "task_lease_expired");
    assert_eq!(expired.len(), 2, "{events:#?}");
    // Every time the cluster recorded is true time, not the fast node's.
    for e in &events {
        assert!(skew_s(e).abs() < 120, "{e:#}");
    }
    cluster.cli(&["job", "cancel", &job]);
}
