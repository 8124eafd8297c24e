//! Text outputs (JSONL, COCO JSON, reports) streamed to the store: bytes
//! are gathered into chunks, uploaded as parts of a multipart upload and
//! hashed on the way, so a file of any size costs one chunk of memory and
//! no second read for its checksum. The object appears only when the file
//! is finished.

use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::DatasetError;
use super::location::Location;
use super::manifest::{ManifestFile, hex};

/// Bytes gathered before they are handed to the upload.
const CHUNK_BYTES: usize = 1 << 20;

/// A text file being written.
pub struct TextSink {
    writer: BufWriter,
    sha: Sha256,
    bytes: u64,
    rows: u64,
    chunk: Vec<u8>,
    relative: String,
}

impl std::fmt::Debug for TextSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextSink")
            .field("path", &self.relative)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl TextSink {
    /// Starts `relative` (slash-separated) below `location`.
    pub fn create(location: &Location, relative: &str) -> Self {
        Self {
            writer: BufWriter::new(location.store.clone(), location.path(relative)),
            sha: Sha256::new(),
            bytes: 0,
            rows: 0,
            chunk: Vec::with_capacity(CHUNK_BYTES),
            relative: relative.to_owned(),
        }
    }

    /// The buffer to append to; call [`TextSink::flush_if_full`] after.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.chunk
    }

    /// Counts `n` records (JSON lines, COCO annotations) for the
    /// manifest.
    pub fn count_rows(&mut self, n: u64) {
        self.rows += n;
    }

    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), DatasetError> {
        self.chunk.extend_from_slice(bytes);
        self.flush_if_full().await
    }

    /// Uploads the gathered bytes once there is a chunk's worth.
    pub async fn flush_if_full(&mut self) -> Result<(), DatasetError> {
        if self.chunk.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DatasetError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.sha.update(&self.chunk);
        self.bytes += self.chunk.len() as u64;
        self.writer
            .write_all(&self.chunk)
            .await
            .map_err(|e| io_error(&self.relative, e))?;
        self.chunk.clear();
        Ok(())
    }

    /// Completes the upload; returns the file's manifest entry.
    pub async fn finish(mut self) -> Result<ManifestFile, DatasetError> {
        self.flush().await?;
        self.writer
            .shutdown()
            .await
            .map_err(|e| io_error(&self.relative, e))?;
        Ok(ManifestFile {
            path: self.relative,
            rows: self.rows,
            bytes: self.bytes,
            sha256: hex(&self.sha.finalize()),
        })
    }
}

fn io_error(path: &str, e: std::io::Error) -> DatasetError {
    DatasetError::Mismatch {
        path: path.to_owned(),
        reason: format!("writing: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_text_file_appears_whole_with_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let mut sink = TextSink::create(&loc, "jsonl/a.jsonl");
        let line = vec![b'x'; 1000];
        for _ in 0..3000 {
            sink.write(&line).await.unwrap();
            sink.write(b"\n").await.unwrap();
            sink.count_rows(1);
        }
        let f = sink.finish().await.unwrap();
        let on_disk = std::fs::read(dir.path().join("jsonl/a.jsonl")).unwrap();
        assert_eq!(f.bytes, on_disk.len() as u64);
        assert_eq!(f.bytes, 3000 * 1001);
        assert_eq!(f.rows, 3000);
        assert_eq!(f.sha256, hex(&Sha256::digest(&on_disk)));
    }
}
