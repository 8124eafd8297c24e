//! Limits on every part of a spec.
//!
//! A spec is user input that ends up replicated through Raft and held in
//! memory by every coordinator, so each dimension is bounded. Each limit is
//! generous for real jobs and small enough that the worst case stays cheap.

/// Largest spec file accepted. Real specs are a few KiB; 1 MiB leaves room for
/// long `list` partitions while keeping one Raft entry small.
pub const SPEC_BYTES_MAX: usize = 1024 * 1024;

/// Deepest YAML nesting; the format itself needs fewer than ten levels.
pub const YAML_DEPTH_MAX: usize = 64;

/// YAML nodes after alias expansion, which stops "billion laughs" documents.
pub const YAML_NODES_MAX: usize = 200_000;

/// Task templates a job may declare.
pub const TASKS_PER_JOB_MAX: usize = 256;

/// Templates after kinds expand into stages (dedup makes five per task).
pub const TEMPLATES_PER_JOB_MAX: usize = 1024;

/// Partitions in one template. A template with a partition range is one
/// record however many partitions it has (DESIGN invariant 6), so this can be
/// large; ten million hourly partitions is over a thousand years.
pub const PARTITIONS_PER_TEMPLATE_MAX: u64 = 10_000_000;

/// Tasks in one job, summed over its templates.
pub const TASKS_TOTAL_MAX: u64 = 20_000_000;

/// Items in an explicit `list` partition set; these are stored inline.
pub const LIST_PARTITIONS_MAX: usize = 100_000;

/// Bytes in one `list` partition value.
pub const LIST_ITEM_BYTES_MAX: usize = 256;

/// Length of job, namespace and task names; 63 matches DNS labels and
/// Kubernetes names, so names can become hostnames, label values or paths.
pub const NAME_LEN_MAX: usize = 63;

/// Labels on a job or in a constraint.
pub const LABELS_MAX: usize = 64;

/// Length of a label key.
pub const LABEL_KEY_LEN_MAX: usize = 63;

/// Length of a label value.
pub const LABEL_VALUE_LEN_MAX: usize = 253;

/// Parameters a spec declares.
pub const PARAMS_MAX: usize = 128;

/// Bytes in one parameter value.
pub const PARAM_VALUE_BYTES_MAX: usize = 4096;

/// Upstream tasks one task may name in `dependsOn`.
pub const DEPENDS_ON_MAX: usize = 256;

/// Arguments in a `command` task's argv.
pub const COMMAND_ARGS_MAX: usize = 256;

/// Retry attempts per task; more than this is a loop, not a retry policy.
pub const RETRIES_MAX: u32 = 100;

/// Longest per-attempt timeout: one week.
pub const TIMEOUT_MAX_MS: u64 = 7 * 24 * 3600 * 1000;

/// Longest retry backoff delay: one day.
pub const BACKOFF_MAX_MS: u64 = 24 * 3600 * 1000;

/// Largest `maxParallel`.
pub const MAX_PARALLEL_MAX: u32 = 1_000_000;

/// Largest `maxCatchup`: a year of hourly runs.
pub const MAX_CATCHUP_MAX: u32 = 8784;

/// Largest shard count for kinds that shard their input.
pub const SHARDS_MAX: u32 = 100_000;

/// Largest `shards` of an annotation export: its merge reads every shard's
/// output from one lease, which lists at most 10,000 upstream outputs.
pub const EXPORT_SHARDS_MAX: u32 = 10_000;

/// Largest `shards` of a sensor backfill (shards per date).
pub const SENSOR_SHARDS_MAX: u32 = 1_024;

/// Most part tasks of a sharded sensor backfill (dates × shards): each
/// date's merge finds its parts among all of them, listed in one lease,
/// which holds at most 10,000 upstream outputs.
pub const SENSOR_PARTS_MAX: u64 = 10_000;

/// Largest `memoryMb` of a sensor backfill task.
pub const SENSOR_MEMORY_MB_MAX: u32 = 1 << 20;

/// Largest `shards` and `bucketPartitions` of a dedup: every candidates
/// task reads one part from each signatures task, so the stages exchange
/// `shards × bucketPartitions` parts; 4,096 each keeps a stage's lease
/// under the 10,000 upstream outputs it may list.
pub const DEDUP_SHARDS_MAX: u32 = 4_096;

/// Longest dedup shingle, in words or characters.
pub const DEDUP_SHINGLE_SIZE_MAX: u32 = 32;

/// Longest `sleep` task: one day.
pub const SLEEP_MS_MAX: u64 = 24 * 3600 * 1000;
