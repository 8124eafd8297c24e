//! `noop`: succeeds at once with an empty output.

use drover_proto::v1::{LeasedTask, OutputManifest};

use super::{Attempt, AttemptContext, Executor};

/// The `noop` executor.
#[derive(Debug, Default)]
pub struct Noop;

impl Executor for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn run(&self, task: LeasedTask, _ctx: AttemptContext) -> Attempt {
        Box::pin(async move {
            Ok(OutputManifest {
                output_prefix: task.output_prefix,
                ..OutputManifest::default()
            })
        })
    }
}
