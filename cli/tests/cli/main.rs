//! The `drover` binary as users run it: real processes on loopback (a
//! cluster of coordinators, workers, the CLI), one module per area. One
//! test binary rather than one per file: each would link the whole
//! workspace again.

mod support;

mod autoscale;
mod bench;
mod clock_skew;
mod cluster_process;
mod console_api;
mod deploy_check;
mod dev_demo;
mod e2e_export;
mod e2e_workers;
mod ec2_notices;
mod everyday;
mod fair_share;
mod full_disk;
mod job_plan;
mod observability;
mod operations;
mod scaling;
mod security;
mod shell;
mod task_logs;
