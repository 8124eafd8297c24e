//! `noop`: succeeds at once with an empty output. It writes nothing, so its
//! manifest names no prefix either: the coordinator then keeps no manifest
//! for the task, which is what lets a backfill of millions of `noop`
//! partitions stay a few dozen bytes per task.

use drover_proto::v1::{LeasedTask, OutputManifest};

use super::{Attempt, AttemptContext, Executor};

/// The `noop` executor.
#[derive(Debug, Default)]
pub struct Noop;

impl Executor for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn run(&self, _task: LeasedTask, _ctx: AttemptContext) -> Attempt {
        Box::pin(async move { Ok(OutputManifest::default()) })
    }
}
