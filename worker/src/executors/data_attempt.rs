//! What every data job's attempt shares: where it reads (the spec's
//! `input`), where its job's outputs live (the spec's `output`), its own
//! prefix below that, and how it commits. Every attempt writes only below
//! its own prefix; its `_manifest.json`, written last, and the
//! coordinator's acceptance of the completion that carries it (the
//! manifest's path and SHA-256) make those files the task's output. An
//! attempt that dies half-way leaves files no manifest names, which no
//! reader looks at.

use drover_proto::v1::{LeasedTask, OutputFile, OutputManifest, UpstreamOutput};
use object_store::ObjectStoreExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AttemptContext, TaskError};
use crate::dataset::DatasetError;
use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestFile, Writer, hex};

/// Version of this code, recorded in every manifest it writes.
pub const CODE_VERSION: &str = concat!("drover-worker ", env!("CARGO_PKG_VERSION"));

/// One upstream task's accepted output.
#[derive(Debug)]
pub struct Upstream {
    /// Its partition index.
    pub index: u64,
    /// Where its files are.
    pub location: Location,
    /// Its manifest.
    pub manifest: DatasetManifest,
}

impl Upstream {
    /// Whether its manifest lists `path`.
    pub fn has(&self, path: &str) -> bool {
        self.manifest.files.iter().any(|f| f.path == path)
    }
}

/// Where an attempt reads and writes, and how it commits.
#[derive(Debug)]
pub struct DataAttempt {
    /// The spec's `input`.
    pub input: Location,
    /// The spec's `output`, where every attempt's prefix lives.
    pub root: Location,
    /// This attempt's own prefix below `root`.
    pub output: Location,
    /// The task's config as sent, for the input fingerprint.
    config_json: String,
}

impl DataAttempt {
    /// The locations of `task`, whose spec reads `input` and writes below
    /// `output`.
    pub fn open(input: &str, output: &str, task: &LeasedTask) -> Result<Self, TaskError> {
        let input = Location::parse(input).map_err(dataset_error)?;
        let root = Location::parse(output).map_err(dataset_error)?;
        crate::output::attempt_dir(std::path::Path::new(""), &task.output_prefix)?;
        Ok(Self {
            input,
            output: root.child(&task.output_prefix),
            root,
            config_json: task.config_json.clone(),
        })
    }

    /// The input's manifest; `hint` says how to make one when there is
    /// none.
    pub async fn input_manifest(&self, hint: &str) -> Result<DatasetManifest, TaskError> {
        manifest::read(&self.input)
            .await
            .map_err(dataset_error)?
            .ok_or_else(|| {
                TaskError::permanent(format!(
                    "{} has no {}: {hint}",
                    self.input.url,
                    manifest::MANIFEST_NAME
                ))
            })
    }

    /// The bytes of a small object (a model, a shard's sums), refusing
    /// one larger than `max`.
    pub async fn read_small(
        &self,
        location: &Location,
        relative: &str,
        max: usize,
    ) -> Result<bytes::Bytes, TaskError> {
        let bytes = read_bytes(location, relative).await?;
        if bytes.len() > max {
            return Err(TaskError::permanent(format!(
                "{}/{relative} is larger than {max} bytes",
                location.url
            )));
        }
        Ok(bytes)
    }

    /// A small JSON object (a shard's counts, a summary), refusing one
    /// larger than `max`.
    pub async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        location: &Location,
        relative: &str,
        max: usize,
    ) -> Result<T, TaskError> {
        let bytes = self.read_small(location, relative, max).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TaskError::permanent(format!("{}/{relative}: {e}", location.url)))
    }

    /// An upstream task's committed output at `prefix` below the output
    /// root, with its manifest; `what` names it in the error when there is
    /// no manifest.
    pub async fn committed(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<(Location, DatasetManifest), TaskError> {
        let location = self.root.child(prefix);
        let m = manifest::read(&location)
            .await
            .map_err(dataset_error)?
            .ok_or_else(|| {
                TaskError::permanent(format!("{what} {} has no manifest", location.url))
            })?;
        Ok((location, m))
    }

    /// The accepted outputs of every partition `0..count` of the earlier
    /// stage `stage` of this task, in partition order, each with its
    /// manifest, as the lease lists them.
    pub async fn upstream(
        &self,
        task: &LeasedTask,
        stage: &str,
        count: u64,
    ) -> Result<Vec<Upstream>, TaskError> {
        self.upstream_where(task, stage, count, |_| true).await
    }

    /// Like [`DataAttempt::upstream`], checking the lease lists every
    /// partition but reading the manifests of those `wanted` keeps only.
    pub async fn upstream_where(
        &self,
        task: &LeasedTask,
        stage: &str,
        count: u64,
        wanted: impl Fn(u64) -> bool,
    ) -> Result<Vec<Upstream>, TaskError> {
        if task.upstream_outputs_truncated {
            return Err(TaskError::permanent(format!(
                "the coordinator could not list every {stage} output in one lease (too many partitions); use fewer shards"
            )));
        }
        let mut ups: Vec<&UpstreamOutput> = task
            .upstream_outputs
            .iter()
            .filter(|u| u.template.rsplit('/').next() == Some(stage))
            .collect();
        ups.sort_by_key(|u| u.partition_index);
        if !ups.iter().map(|u| u.partition_index).eq(0..count) {
            return Err(TaskError::permanent(format!(
                "expected the outputs of {stage} 0..{count}, the lease lists {} of them",
                ups.len()
            )));
        }
        let mut out = Vec::with_capacity(ups.len());
        for u in ups.into_iter().filter(|u| wanted(u.partition_index)) {
            if u.output_prefix.is_empty() {
                return Err(TaskError::permanent(format!(
                    "{stage} {} has no recorded output",
                    u.partition_index
                )));
            }
            let (location, manifest) = self
                .committed(
                    &u.output_prefix,
                    &format!("{stage} {}'s accepted output", u.partition_index),
                )
                .await?;
            out.push(Upstream {
                index: u.partition_index,
                location,
                manifest,
            });
        }
        Ok(out)
    }

    /// Fails the attempt if it was told to stop.
    pub fn stopped(&self, ctx: &AttemptContext) -> Result<(), TaskError> {
        if *ctx.cancel.borrow() {
            Err(TaskError::retryable("stopped"))
        } else {
            Ok(())
        }
    }

    /// Writes `value` as pretty JSON at `relative` in one PUT.
    pub async fn write_json<T: Serialize>(
        &self,
        relative: &str,
        value: &T,
        rows: u64,
    ) -> Result<ManifestFile, TaskError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| TaskError::permanent(format!("{relative}: {e}")))?;
        self.write_bytes(relative, bytes, rows).await
    }

    /// Writes `bytes` at `relative` in one PUT.
    pub async fn write_bytes(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        rows: u64,
    ) -> Result<ManifestFile, TaskError> {
        let file = ManifestFile {
            path: relative.to_owned(),
            rows,
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        };
        self.output
            .store
            .put(&self.output.path(relative), bytes.into())
            .await
            .map_err(|e| dataset_error(e.into()))?;
        Ok(file)
    }

    /// The input fingerprint: the config and the hashes of what was read.
    pub fn fingerprint(&self, task: &LeasedTask, inputs: &[String]) -> String {
        let mut h = Sha256::new();
        h.update(self.config_json.as_bytes());
        h.update([0]);
        h.update(task.partition_index.to_le_bytes());
        for i in inputs {
            h.update(i.as_bytes());
            h.update([0]);
        }
        hex(&h.finalize())
    }

    /// Who writes this attempt's manifest.
    pub fn writer(&self, task: &LeasedTask, input_fingerprint: String) -> Writer {
        Writer {
            task: task.task_id.clone(),
            attempt: task.attempt,
            fencing_token: task.fencing_token,
            code_version: CODE_VERSION.to_owned(),
            input_fingerprint,
        }
    }

    /// Writes the manifest (the commit point of the attempt's files) and
    /// returns what the completion carries to the coordinator: the
    /// manifest file alone. Its SHA-256 pins every file it lists, so the
    /// coordinator's record stays a few hundred bytes however many files
    /// an output has.
    pub async fn commit(
        &self,
        task: &LeasedTask,
        m: DatasetManifest,
    ) -> Result<OutputManifest, TaskError> {
        let json = manifest::write(&self.output, &m)
            .await
            .map_err(dataset_error)?;
        Ok(completion(&task.output_prefix, m, json))
    }
}

impl DataAttempt {
    /// Commits like [`DataAttempt::commit`], then publishes the result at
    /// the spec's `output` itself, each file's name tagged with this
    /// lease's fencing token ([`crate::dataset::publish`]): what the last
    /// task of a job does, so the result has one place users and the next
    /// job read, whichever attempt made it.
    pub async fn commit_and_publish(
        &self,
        task: &LeasedTask,
        m: DatasetManifest,
    ) -> Result<OutputManifest, TaskError> {
        use crate::dataset::publish::{self, is_tagged, tagged};

        let done = self.commit(task, m.clone()).await?;
        let token = task.fencing_token;
        let published = publish::publish(
            &self.output,
            &m,
            &self.root,
            |path| Some(tagged(path, token)),
            |path| is_tagged(path) && !path.starts_with("jobs/"),
        )
        .await
        .map_err(dataset_error)?;
        tracing::info!(output = %self.root.url, ?published, "result published");
        Ok(done)
    }
}

/// What a completion carries for the output at `prefix` (below the output
/// root) committed by manifest `m`, whose own file is `json`.
pub fn completion(prefix: &str, m: DatasetManifest, json: ManifestFile) -> OutputManifest {
    OutputManifest {
        output_prefix: prefix.to_owned(),
        files: vec![OutputFile {
            path: json.path,
            rows: m.rows,
            bytes: json.bytes,
            sha256: json.sha256,
        }],
        schema_json: serde_json::to_string(&m.schema).unwrap_or_default(),
        code_version: m.code_version,
        input_fingerprint: m.input_fingerprint,
        created_unix_ms: chrono::Utc::now().timestamp_millis(),
    }
}

/// The whole of `relative` below `location`.
pub async fn read_bytes(location: &Location, relative: &str) -> Result<bytes::Bytes, TaskError> {
    location
        .store
        .get(&location.path(relative))
        .await
        .map_err(|e| dataset_error(e.into()))?
        .bytes()
        .await
        .map_err(|e| dataset_error(e.into()))
}

/// A dataset failure as an attempt failure: a store that failed may work
/// on a retry; data that does not decode will not.
pub fn dataset_error(e: DatasetError) -> TaskError {
    match e {
        // The Parquet writer reports the store's failures as external.
        DatasetError::Store(_)
        | DatasetError::Parquet(::parquet::errors::ParquetError::External(_)) => {
            TaskError::retryable(e.to_string())
        }
        _ => TaskError::permanent(e.to_string()),
    }
}
