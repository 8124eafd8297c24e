//! JSONL in: an object read as a stream of byte chunks and cut into lines,
//! so a file of any size costs one chunk and one line of memory. A line
//! longer than the limit is an error naming the file and line, not an
//! allocation without end.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::ObjectStoreExt;

use super::DatasetError;
use super::location::Location;

/// Longest line read.
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Where a line reader is.
struct Reader {
    body: BoxStream<'static, object_store::Result<Bytes>>,
    pending: Vec<u8>,
    /// Lines taken so far.
    number: u64,
    /// The body has ended (or failed).
    ended: bool,
    path: String,
}

impl Reader {
    /// The next non-blank line, with its 1-based number.
    async fn next_line(&mut self) -> Option<Result<(u64, Vec<u8>), DatasetError>> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.number += 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(Ok((self.number, line)));
            }
            if self.ended {
                // The last line may have no newline.
                if self.pending.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                self.number += 1;
                return Some(Ok((self.number, std::mem::take(&mut self.pending))));
            }
            if self.pending.len() > LINE_BYTES_MAX {
                self.ended = true;
                self.pending.clear();
                return Some(Err(DatasetError::Mismatch {
                    path: self.path.clone(),
                    reason: format!(
                        "line {} is longer than {LINE_BYTES_MAX} bytes",
                        self.number + 1
                    ),
                }));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.pending.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.ended = true;
                    self.pending.clear();
                    return Some(Err(e.into()));
                }
                None => self.ended = true,
            }
        }
    }
}

/// The lines of `relative` below `location`, without their line ends,
/// blank lines skipped, each with its 1-based line number.
pub async fn lines(
    location: &Location,
    relative: &str,
) -> Result<impl Stream<Item = Result<(u64, Vec<u8>), DatasetError>> + Send + use<>, DatasetError> {
    let body = location
        .store
        .get(&location.path(relative))
        .await?
        .into_stream()
        .boxed();
    let reader = Reader {
        body,
        pending: Vec::new(),
        number: 0,
        ended: false,
        path: relative.to_owned(),
    };
    Ok(futures::stream::unfold(reader, |mut r| async move {
        r.next_line().await.map(|line| (line, r))
    }))
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;
    use crate::dataset::text::TextSink;

    #[tokio::test]
    async fn lines_come_back_whole_across_chunks_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let mut sink = TextSink::create(&loc, "docs.jsonl");
        let long = "x".repeat(3 << 20);
        sink.write(b"{\"a\":1}\r\n\n  \n").await.unwrap();
        sink.write(format!("{{\"b\":\"{long}\"}}\n").as_bytes())
            .await
            .unwrap();
        sink.write(b"{\"c\":3}").await.unwrap();
        sink.finish().await.unwrap();
        let got: Vec<(u64, Vec<u8>)> = lines(&loc, "docs.jsonl")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 4, 5]);
        assert_eq!(got[0].1, b"{\"a\":1}");
        assert_eq!(got[1].1.len(), long.len() + 8);
        assert_eq!(got[2].1, b"{\"c\":3}");
    }
}
