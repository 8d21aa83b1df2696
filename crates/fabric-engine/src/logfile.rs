//! A log file rotated by size: `fabric.log` grows to `logs.max_bytes`, then becomes
//! `fabric.log.1` (the previous `.1` becomes `.2`, and so on), keeping `logs.keep` rotated
//! files; the oldest is deleted. Files are created 0600.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An append-only writer that rotates its file before a write would take it past
/// `max_bytes`. A single write larger than `max_bytes` still goes whole into a fresh file
/// (one log event is never split across files).
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appending to) `path`, rotating at `max_bytes` (at least 1) and keeping `keep`
    /// rotated files (at least 1).
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file,
            size,
        })
    }

    /// The `n`th rotated file, `<path>.<n>`.
    pub fn rotated(path: &Path, n: u32) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Shifts `.1..keep-1` up by one (dropping `.keep`), moves the live file to `.1` and
    /// starts a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let _ = std::fs::remove_file(Self::rotated(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = Self::rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, Self::rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, Self::rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // One event, one file: rotate once for the whole buffer.
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_max_bytes_and_keeps_n_files() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("fabric.log");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..10 {
            f.write_all(format!("{i}{}\n", "x".repeat(38)).as_bytes())
                .unwrap();
        }
        // 40-byte lines, two per 100-byte file: 0-1, 2-3, 4-5, 6-7, 8-9.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert!(read(&path).starts_with('8'), "{}", read(&path));
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&RotatingFile::rotated(&path, 1)).starts_with('6'));
        assert!(read(&RotatingFile::rotated(&path, 2)).starts_with('4'));
        assert!(!RotatingFile::rotated(&path, 3).exists());
        for p in [path.clone(), RotatingFile::rotated(&path, 1)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 100);
        }
        // Reopened, it appends and counts what is there.
        drop(f);
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        f.write_all(&[b'y'; 30]).unwrap();
        assert!(read(&RotatingFile::rotated(&path, 1)).starts_with('8'));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
