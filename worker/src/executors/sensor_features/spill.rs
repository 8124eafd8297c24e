//! Records cut into parts: kept in memory when there is one part, written
//! to files in the attempt's scratch directory when there are more, and
//! read back one part at a time. This is how a partition larger than the
//! memory budget is grouped by device, and its speeds by group, with only
//! one part in memory at once.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::fixed::Fixed;

/// Bytes buffered per part file before a write.
const WRITE_BUFFER_BYTES: usize = 256 << 10;

/// Bytes read at a time when a part comes back.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// One part on disk.
#[derive(Debug)]
struct PartFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

#[derive(Debug)]
enum Store<T> {
    Memory(Vec<T>),
    Files(Vec<PartFile>),
}

/// Records of type `T` in `parts` parts.
#[derive(Debug)]
pub struct Parts<T> {
    store: Store<T>,
    encoded: Vec<u8>,
    spilled_bytes: u64,
}

impl<T: Fixed> Parts<T> {
    /// `parts` parts (at least one); with one, records stay in memory,
    /// room made for `capacity` of them. With more, each part is a file
    /// `name-N.bin` in `dir`, created now.
    pub fn new(parts: usize, dir: &Path, name: &str, capacity: usize) -> io::Result<Self> {
        let store = if parts <= 1 {
            Store::Memory(Vec::with_capacity(capacity))
        } else {
            std::fs::create_dir_all(dir)?;
            let mut files = Vec::with_capacity(parts);
            for p in 0..parts {
                let path = dir.join(format!("{name}-{p}.bin"));
                let file = File::create(&path)?;
                files.push(PartFile {
                    path,
                    writer: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
                });
            }
            Store::Files(files)
        };
        Ok(Self {
            store,
            encoded: Vec::with_capacity(T::SIZE),
            spilled_bytes: 0,
        })
    }

    /// Parts.
    pub fn count(&self) -> usize {
        match &self.store {
            Store::Memory(_) => 1,
            Store::Files(f) => f.len(),
        }
    }

    /// Bytes written to disk so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }

    /// Adds `record` to part `part` (taken modulo the part count).
    pub fn push(&mut self, part: usize, record: T) -> io::Result<()> {
        match &mut self.store {
            Store::Memory(v) => {
                v.push(record);
                Ok(())
            }
            Store::Files(files) => {
                let n = files.len();
                let writer = files[part % n].writer.as_mut().ok_or_else(|| {
                    io::Error::other(format!("part {} was already read back", part % n))
                })?;
                self.encoded.clear();
                record.put(&mut self.encoded);
                self.spilled_bytes += self.encoded.len() as u64;
                writer.write_all(&self.encoded)
            }
        }
    }

    /// Every record of part `part`, in the order pushed; the part is then
    /// empty (its file removed) and takes no more records.
    pub fn take(&mut self, part: usize) -> io::Result<Vec<T>> {
        match &mut self.store {
            Store::Memory(v) => Ok(std::mem::take(v)),
            Store::Files(files) => {
                let n = files.len();
                let f = &mut files[part % n];
                let Some(writer) = f.writer.take() else {
                    return Ok(Vec::new());
                };
                let mut file = writer.into_inner().map_err(|e| e.into_error())?;
                file.flush()?;
                drop(file);
                let mut file = File::open(&f.path)?;
                let bytes = file.metadata()?.len();
                let mut out = Vec::with_capacity((bytes / T::SIZE as u64) as usize);
                let chunk = (READ_CHUNK_BYTES / T::SIZE).max(1) * T::SIZE;
                let mut buf = vec![0u8; chunk];
                loop {
                    let n = read_full(&mut file, &mut buf)?;
                    if n % T::SIZE != 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{} ends inside a {}-byte record", f.path.display(), T::SIZE),
                        ));
                    }
                    out.extend(buf[..n].chunks_exact(T::SIZE).map(T::get));
                    if n < buf.len() {
                        break;
                    }
                }
                std::fs::remove_file(&f.path)?;
                Ok(out)
            }
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match file.read(&mut buf[at..])? {
            0 => break,
            n => at += n,
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_by_part_in_order_from_memory_or_disk() {
        let dir = tempfile::tempdir().unwrap();
        for parts in [1usize, 3] {
            let mut p: Parts<u64> = Parts::new(parts, dir.path(), "t", 0).unwrap();
            // Enough to cross the read chunk in a part.
            let n = 400_000u64;
            for i in 0..n {
                p.push(i as usize, i).unwrap();
            }
            assert_eq!(p.count(), parts);
            assert_eq!(p.spilled_bytes(), if parts == 1 { 0 } else { n * 8 });
            let mut all = Vec::new();
            for part in 0..parts {
                let got = p.take(part).unwrap();
                assert!(got.iter().all(|v| *v as usize % parts == part));
                assert!(got.windows(2).all(|w| w[0] < w[1]));
                all.extend(got);
            }
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "files are removed once read"
        );
    }
}
