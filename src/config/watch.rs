//! Noticing configuration edits: the daemon compares file contents once a second (no
//! inotify: editors that replace files, network filesystems and deleted folders all just
//! work, and a handful of small files costs nothing to read).

use std::path::PathBuf;

/// The content of a set of files at the last look.
#[derive(Debug, Default)]
pub struct FileWatch(Vec<(PathBuf, Vec<u8>)>);

impl FileWatch {
    /// Reads `paths` and says whether anything differs from the last call (a file added,
    /// removed or edited). A file that cannot be read counts as empty.
    pub fn changed(&mut self, paths: Vec<PathBuf>) -> bool {
        let now: Vec<(PathBuf, Vec<u8>)> = paths
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap_or_default();
                (p, bytes)
            })
            .collect();
        let changed = now != self.0;
        self.0 = now;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_additions_and_removals_are_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, "1").expect("write");
        let mut watch = FileWatch::default();
        assert!(watch.changed(vec![a.clone()]));
        assert!(!watch.changed(vec![a.clone()]));
        std::fs::write(&a, "2").expect("write");
        assert!(watch.changed(vec![a.clone()]));
        std::fs::write(&b, "x").expect("write");
        assert!(watch.changed(vec![a.clone(), b.clone()]));
        assert!(watch.changed(vec![a]));
    }
}
