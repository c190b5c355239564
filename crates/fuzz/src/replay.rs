//! Replays the committed inputs of every target: `fuzz/corpus/TARGET/` (the seeds and
//! what the fuzzers kept) and `fuzz/regressions/TARGET/` (each input that once made a
//! target fail), through the same functions the fuzzers call.

use std::path::{Path, PathBuf};

/// The `fuzz/` directory of the repository.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/KIND/TARGET/` (none if the directory does not exist), sorted.
pub fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        dir.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TARGETS;

    #[test]
    fn every_target_has_a_seed_corpus_and_a_fuzz_binary() {
        for (name, _) in TARGETS {
            assert!(!inputs("corpus", name).is_empty(), "fuzz/corpus/{name} is empty");
            let bin = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            assert!(bin.is_file(), "{} is missing", bin.display());
        }
    }

    #[test]
    fn committed_corpus_and_regressions_replay_without_a_failure() {
        let mut count = 0;
        for (name, target) in TARGETS {
            for kind in ["corpus", "regressions"] {
                for path in inputs(kind, name) {
                    let data = std::fs::read(&path).expect("readable input");
                    // A panic names the input that caused it.
                    let run = std::panic::catch_unwind(|| target(&data));
                    assert!(run.is_ok(), "{name} failed on {}", path.display());
                    count += 1;
                }
            }
        }
        assert!(count >= TARGETS.len(), "only {count} inputs replayed");
    }
}
