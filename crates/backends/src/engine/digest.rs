//! The SHA-256 of a model file, Ollama's `digest`. Hashing a GGUF file reads all of
//! it, so it runs on a blocking thread, once: the result is remembered by path, size
//! and modification time, and a file that did not change is not read again.

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};

/// What identifies one version of a file: a change to any of these means new content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileKey {
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

impl FileKey {
    fn of(path: &Path) -> std::io::Result<FileKey> {
        let meta = std::fs::metadata(path)?;
        Ok(FileKey { path: path.to_path_buf(), size: meta.len(), modified: meta.modified()? })
    }
}

/// Digests of files, by path, size and modification time. Shared by clones of an `Arc`.
#[derive(Debug, Default)]
pub struct DigestCache {
    digests: Mutex<HashMap<PathBuf, (FileKey, String)>>,
    /// Held while hashing, so concurrent callers wait for one hash instead of each
    /// reading the file.
    hashing: Mutex<()>,
    /// Files read so far (what the cache saves is visible in tests).
    hashed: AtomicU64,
}

impl DigestCache {
    /// An empty cache.
    pub fn new() -> Arc<DigestCache> {
        Arc::default()
    }

    /// The hex SHA-256 of the file at `path`: from the cache while the file keeps its
    /// size and modification time, else read on a blocking thread. `None` if the file
    /// cannot be read, changes while being read, or takes longer than `wait` (the hash
    /// then finishes in the background and the next call finds it cached).
    pub async fn digest(self: &Arc<Self>, path: &Path, wait: Duration) -> Option<String> {
        let cache = Arc::clone(self);
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || cache.digest_blocking(&path));
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(digest)) => digest,
            Ok(Err(join)) => {
                tracing::warn!(error = %join, "hashing a model file failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Files hashed (read in full) since the cache was made.
    pub fn files_hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// [`DigestCache::digest`] on the calling thread, which may block for as long as
    /// reading the file takes.
    fn digest_blocking(&self, path: &Path) -> Option<String> {
        let key = FileKey::of(path).ok()?;
        if let Some(digest) = self.cached(&key) {
            return Some(digest);
        }
        let _hashing = self.hashing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(digest) = self.cached(&key) {
            return Some(digest);
        }
        let digest = match sha256_file(path) {
            Ok(digest) => digest,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot hash model file");
                return None;
            }
        };
        self.hashed.fetch_add(1, Ordering::Relaxed);
        // A file rewritten while it was read has no single digest: report none.
        if FileKey::of(path).ok().as_ref() != Some(&key) {
            return None;
        }
        self.lock().insert(key.path.clone(), (key, digest.clone()));
        Some(digest)
    }

    fn cached(&self, key: &FileKey) -> Option<String> {
        self.lock().get(&key.path).filter(|(k, _)| k == key).map(|(_, digest)| digest.clone())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, (FileKey, String)>> {
        // Entries are inserted whole, so a panic elsewhere cannot leave one half-written.
        self.digests.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf 'hello\n' | sha256sum`.
    const HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[tokio::test]
    async fn hashes_a_file_once_while_it_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"hello\n").unwrap();
        let cache = DigestCache::new();
        let wait = Duration::from_secs(30);
        assert_eq!(cache.digest(&path, wait).await.as_deref(), Some(HELLO));
        assert_eq!(cache.digest(&path, wait).await.as_deref(), Some(HELLO));
        assert_eq!(cache.files_hashed(), 1, "same path, size and mtime: not read again");
    }

    #[tokio::test]
    async fn a_changed_file_gets_a_new_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"hello\n").unwrap();
        let cache = DigestCache::new();
        let wait = Duration::from_secs(30);
        assert_eq!(cache.digest(&path, wait).await.as_deref(), Some(HELLO));

        // Same size, new content and mtime.
        std::fs::write(&path, b"HELLO\n").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
        drop(file);
        let changed = cache.digest(&path, wait).await.unwrap();
        assert_ne!(changed, HELLO);
        assert_eq!(changed, hex::encode(Sha256::digest(b"HELLO\n")));
        assert_eq!(cache.files_hashed(), 2);

        // A different size is a change too, whatever the mtime.
        std::fs::write(&path, b"hello, world\n").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
        drop(file);
        assert_eq!(cache.digest(&path, wait).await, Some(hex::encode(Sha256::digest(b"hello, world\n"))));
        assert_eq!(cache.files_hashed(), 3);
    }

    #[tokio::test]
    async fn a_missing_file_has_no_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DigestCache::new();
        assert_eq!(cache.digest(&dir.path().join("absent.gguf"), Duration::from_secs(30)).await, None);
        assert_eq!(cache.files_hashed(), 0);
    }
}
