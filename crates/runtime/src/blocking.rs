//! The one way blocking work (file-system trees, cgroup tear-down with its
//! waits) leaves the async workers: tokio's blocking pool.

use crate::error::{Result, RuntimeError};

/// Runs `work` on the blocking pool and waits for it.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RuntimeError::Config(format!("blocking task failed: {e}")))
}

/// Removes a directory tree (what is already gone is fine) on the blocking pool,
/// with [`crate::remove_tree::remove_tree`]: the trees removed here (snapshots, dumps,
/// copies) may hold what a sandbox wrote, of any depth.
pub async fn remove_dir_all(dir: std::path::PathBuf) -> Result<()> {
    run(move || crate::remove_tree::remove_tree(&dir).map_err(RuntimeError::io("removing", &dir)))
        .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_and_removes_trees() {
        assert_eq!(run(|| 41 + 1).await.expect("run"), 42);
        let tmp = tempfile::tempdir().expect("tmp");
        let tree = tmp.path().join("a/b");
        std::fs::create_dir_all(&tree).expect("mkdir");
        std::fs::write(tree.join("f"), b"x").expect("write");
        remove_dir_all(tmp.path().join("a")).await.expect("remove");
        assert!(!tmp.path().join("a").exists());
        remove_dir_all(tmp.path().join("a"))
            .await
            .expect("already gone is fine");
    }
}
