//! JSONL in: an object read as a stream of byte chunks and cut into lines,
//! so a file of any size costs one chunk and one line of memory. A line
//! longer than the limit is an error naming the file and line, not an
//! allocation without end.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::DatasetError;
use super::location::Location;

/// Longest line read.
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Where a line reader is.
struct Reader {
    body: BoxStream<'static, object_store::Result<Bytes>>,
    /// Bytes read and not yet taken; `buf[pos..]` is pending.
    buf: Vec<u8>,
    pos: usize,
    /// How far `buf[pos..]` has been searched for a line end.
    scanned: usize,
    /// Offset in the object of `buf[pos]`.
    offset: u64,
    /// Lines before the next one (counted only when reading from the
    /// start of the object).
    number: u64,
    /// Drop everything up to the first line end: the reader starts inside
    /// a line another range owns.
    skip_first: bool,
    /// Lines starting at or after this offset are not returned.
    end: u64,
    /// The body has ended (or failed).
    ended: bool,
    path: String,
}

/// Where a line is: its offset in the object, its number when known, and
/// its bytes (without the line end) as a range of the reader's buffer.
struct Span {
    offset: u64,
    number: u64,
    start: usize,
    end: usize,
}

/// Bytes a [`LineBatch`] fills before it is handed on.
const BATCH_BYTES: usize = 8 << 20;

/// Lines read together, their bytes end to end in one buffer.
#[derive(Debug, Default)]
pub struct LineBatch {
    data: Vec<u8>,
    /// (offset in the object, start and end in `data`) of each line.
    lines: Vec<(u64, usize, usize)>,
}

impl LineBatch {
    /// Lines in it.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The `k`th line, with the offset in the object it starts at.
    pub fn get(&self, k: usize) -> Option<(u64, &[u8])> {
        self.lines
            .get(k)
            .map(|&(offset, a, b)| (offset, &self.data[a..b]))
    }

    /// Each line, with the offset in the object it starts at.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.lines
            .iter()
            .map(|&(offset, a, b)| (offset, &self.data[a..b]))
    }
}

/// A line as read: its number and its bytes without the line end.
struct RawLine {
    number: u64,
    bytes: Vec<u8>,
}

impl Reader {
    fn new(body: BoxStream<'static, object_store::Result<Bytes>>, path: &str) -> Self {
        Self {
            body,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            offset: 0,
            number: 0,
            skip_first: false,
            end: u64::MAX,
            ended: false,
            path: path.to_owned(),
        }
    }

    /// The next non-blank line starting before `end`, as where it lies in
    /// `buf`: valid until the reader is used again.
    async fn next_span(&mut self) -> Option<Result<Span, DatasetError>> {
        loop {
            let found = memchr::memchr(b'\n', &self.buf[self.pos + self.scanned..])
                .map(|i| self.pos + self.scanned + i);
            if let Some(nl) = found {
                let (start, offset) = (self.pos, self.offset);
                self.offset += (nl + 1 - start) as u64;
                self.pos = nl + 1;
                self.scanned = 0;
                if std::mem::take(&mut self.skip_first) {
                    continue;
                }
                if offset >= self.end {
                    self.ended = true;
                    return None;
                }
                self.number += 1;
                let mut line = &self.buf[start..nl];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let end = start + line.len();
                return Some(Ok(Span {
                    offset,
                    number: self.number,
                    start,
                    end,
                }));
            }
            self.scanned = self.buf.len() - self.pos;
            if self.ended {
                // The last line may have no newline.
                let rest = &self.buf[self.pos..];
                if self.skip_first
                    || self.offset >= self.end
                    || rest.iter().all(u8::is_ascii_whitespace)
                {
                    return None;
                }
                self.number += 1;
                let line = Span {
                    offset: self.offset,
                    number: self.number,
                    start: self.pos,
                    end: self.buf.len(),
                };
                self.offset += rest.len() as u64;
                self.pos = self.buf.len();
                self.scanned = 0;
                return Some(Ok(line));
            }
            if self.skip_first {
                // Another range's line: nothing of it is kept.
                self.offset += (self.buf.len() - self.pos) as u64;
                self.buf.clear();
                self.pos = 0;
                self.scanned = 0;
            } else if self.buf.len() - self.pos > LINE_BYTES_MAX {
                self.ended = true;
                self.buf.clear();
                self.pos = 0;
                return Some(Err(DatasetError::Mismatch {
                    path: self.path.clone(),
                    reason: format!(
                        "the line at byte {} is longer than {LINE_BYTES_MAX} bytes",
                        self.offset
                    ),
                }));
            } else if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.ended = true;
                    self.buf.clear();
                    self.pos = 0;
                    self.scanned = 0;
                    return Some(Err(e.into()));
                }
                None => self.ended = true,
            }
        }
    }

    /// The next line, copied out.
    async fn next_line(&mut self) -> Option<Result<RawLine, DatasetError>> {
        let span = self.next_span().await?;
        Some(span.map(|s| RawLine {
            number: s.number,
            bytes: self.buf[s.start..s.end].to_vec(),
        }))
    }

    /// Up to `lines_max` next lines (fewer once [`BATCH_BYTES`] are
    /// taken), copied into one buffer: one allocation for many lines.
    async fn next_batch(&mut self, lines_max: usize) -> Option<Result<LineBatch, DatasetError>> {
        let mut batch = LineBatch::default();
        while batch.lines.len() < lines_max.max(1) && batch.data.len() < BATCH_BYTES {
            match self.next_span().await {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(s)) => {
                    let from = batch.data.len();
                    batch.data.extend_from_slice(&self.buf[s.start..s.end]);
                    batch.lines.push((s.offset, from, batch.data.len()));
                }
            }
        }
        (!batch.lines.is_empty()).then_some(Ok(batch))
    }
}

fn stream_of(reader: Reader) -> impl Stream<Item = Result<RawLine, DatasetError>> + Send + use<> {
    futures::stream::unfold(reader, |mut r| async move {
        r.next_line().await.map(|line| (line, r))
    })
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
    Ok(stream_of(Reader::new(body, relative)).map_ok(|l| (l.number, l.bytes)))
}

/// Bytes fetched per ranged read: few enough requests for a large object,
/// little enough memory.
const BLOCK_BYTES: u64 = 4 << 20;

/// Ranged reads in flight at once.
const READ_AHEAD_BLOCKS: usize = 2;

/// The non-blank lines of `relative`, an object of `size` bytes, that
/// start in the byte range `start..end`, each with the offset it starts
/// at, in batches of up to `lines_max` lines sharing one buffer. A line
/// belongs to the range its first byte is in, so ranges that tile an
/// object read each of its lines exactly once; the last line read may run
/// past `end`. The object is fetched in ranged reads of a few megabytes,
/// only as far as the lines taken need.
pub fn line_batches_starting_in(
    location: &Location,
    relative: &str,
    size: u64,
    start: u64,
    end: u64,
    lines_max: usize,
) -> impl Stream<Item = Result<LineBatch, DatasetError>> + Send + use<> {
    batches_in_blocks(location, relative, size, start, end, lines_max, BLOCK_BYTES)
}

fn batches_in_blocks(
    location: &Location,
    relative: &str,
    size: u64,
    start: u64,
    end: u64,
    lines_max: usize,
    block: u64,
) -> impl Stream<Item = Result<LineBatch, DatasetError>> + Send + use<> {
    let reader = ranged_reader(location, relative, size, start, end, block);
    futures::stream::unfold(reader, move |mut r| async move {
        r.next_batch(lines_max).await.map(|batch| (batch, r))
    })
}

/// A reader of the lines starting in `start..end`, fetching `block` bytes
/// at a time.
fn ranged_reader(
    location: &Location,
    relative: &str,
    size: u64,
    start: u64,
    end: u64,
    block: u64,
) -> Reader {
    // From the byte before `start`: if it ends a line, the line at `start`
    // is ours; otherwise the line it is in belongs to the range before.
    let from = start.saturating_sub(1);
    let store = location.store.clone();
    let path = location.path(relative);
    let block = block.max(1);
    // One block read ahead, so fetching overlaps cutting lines; a reader
    // that stops at `end` may so fetch one block it does not use.
    let body = futures::stream::iter((0u64..).map(move |i| from + i * block))
        .take_while(move |at| futures::future::ready(*at < size))
        .map(move |at| {
            let (store, path) = (store.clone(), path.clone());
            async move { store.get_range(&path, at..size.min(at + block)).await }
        })
        .buffered(READ_AHEAD_BLOCKS)
        .boxed();
    let mut reader = Reader::new(body, relative);
    reader.offset = from;
    reader.skip_first = start > 0;
    reader.end = end;
    reader
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

    #[tokio::test]
    async fn ranges_that_tile_an_object_read_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let mut text = Vec::new();
        for i in 0..300 {
            // Lines of varied length, one blank, the last without a newline.
            text.extend_from_slice(
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "y".repeat(i % 37)).as_bytes(),
            );
            text.extend_from_slice(if i == 150 { b"\n\n" } else { b"\n" });
        }
        text.pop();
        let mut sink = TextSink::create(&loc, "t.jsonl");
        sink.write(&text).await.unwrap();
        sink.finish().await.unwrap();
        let len = text.len() as u64;
        let read = |a: u64, b: u64, lines_max: usize, block: u64| {
            let loc = loc.clone();
            async move {
                let batches: Vec<LineBatch> =
                    batches_in_blocks(&loc, "t.jsonl", len, a, b, lines_max, block)
                        .try_collect()
                        .await
                        .unwrap();
                assert!(
                    batches
                        .iter()
                        .all(|b| !b.is_empty() && b.len() <= lines_max)
                );
                batches
                    .iter()
                    .flat_map(|b| b.iter().map(|(o, l)| (o, l.to_vec())))
                    .collect::<Vec<(u64, Vec<u8>)>>()
            }
        };
        let all = read(0, u64::MAX, 8192, BLOCK_BYTES).await;
        assert_eq!(all.len(), 300);
        for (offset, line) in &all {
            assert_eq!(
                &text[*offset as usize..*offset as usize + line.len()],
                &line[..]
            );
        }
        for parts in [1u64, 2, 3, 7, 64, 1000] {
            let mut got = Vec::new();
            for p in 0..parts {
                let (a, b) = (len * p / parts, len * (p + 1) / parts);
                // Blocks far smaller than a line, and small batches, too.
                let block = if parts % 2 == 0 { 7 } else { BLOCK_BYTES };
                let part = read(a, b, 17, block).await;
                assert!(part.iter().all(|(o, _)| (a..b).contains(o)), "{parts}/{p}");
                got.extend(part);
            }
            assert_eq!(got, all, "{parts} ranges");
        }
    }
}
