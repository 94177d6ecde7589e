//! The data directory is root's alone: directories 0700, files 0600.
//!
//! Everything in it is either a secret (keys, environments in bundles) or was
//! written by a sandbox (disk images, dumps of process memory, archives of
//! both) and must not be readable, runnable or openable by any other host
//! user. [`secure_tree`] repairs a tree at start-up (data written by an
//! older version, or by hand).
//!
//! The path to a sandbox's root file system is the exception that user
//! namespaces force: runc sets the root up from inside the sandbox's user
//! namespace, whose root is an unprivileged host id, so the data directory
//! and `sandboxes/` are 0711 (enterable, not listable; everything in them
//! has its own restrictive mode) and each `sandboxes/<id>` is 0700 and owned
//! by its sandbox's root id while it runs (see [`own_sandbox_dir`]). No other
//! host user can enter it.
//!
//! One kind of directory is different: a CRIU image directory. When a
//! sandbox is restored, CRIU reads part of its images from inside the
//! sandbox's user namespace, whose root is an unprivileged host id, so those
//! directories are 0711 and their files 0644. They only ever sit in a 0700
//! directory, which no other host user can enter.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// The marker file of a CRIU image directory.
const CRIU_INVENTORY: &str = "inventory.img";

/// Whether `dir` is a CRIU image directory.
pub fn is_criu_images(dir: &Path) -> bool {
    dir.join(CRIU_INVENTORY).is_file()
}

/// Opens a CRIU image directory to the restoring sandbox: 0711, files 0644.
pub fn open_criu_images(dir: &Path) -> Result<()> {
    set_mode(dir, 0o711)?;
    let entries = std::fs::read_dir(dir).map_err(RuntimeError::io("listing", dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let meta =
            std::fs::symlink_metadata(&path).map_err(RuntimeError::io("inspecting", &path))?;
        if meta.is_file() {
            set_mode(&path, 0o644)?;
        }
    }
    Ok(())
}

/// Writes `contents` to `path` with `mode` (created so, or set so if it was there): a file
/// never exists with a wider mode, not even for a moment.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(RuntimeError::io("writing", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .map_err(RuntimeError::io("writing", path))
}

/// Makes `dir`, and any parent it lacks, with `mode` (what exists keeps its own mode): the
/// data directory's own directories are made with the modes [`secure_tree`] checks.
pub fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(RuntimeError::io("creating", dir))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(RuntimeError::io("setting the mode of", path))
}

/// Makes `root` and everything below it root-only (see the module doc):
/// directories 0700 (CRIU image directories 0711), files 0600 (in CRIU image
/// directories 0644), never setuid, setgid or sticky. Symlinks are not
/// followed, and mount points (a sandbox's layer, its overlay, the idmapped
/// image) are neither changed nor entered: they hold the sandbox's own files,
/// behind a 0700 directory. Returns the entries it changed.
pub fn secure_tree(root: &Path) -> Result<Vec<PathBuf>> {
    let tree = Tree {
        mounts: crate::layer::mounts_under(root).into_iter().collect(),
        traverse: [root.to_path_buf(), root.join("sandboxes")].into(),
        runc_root: root.join("runc"),
        sandboxes: root.join("sandboxes"),
    };
    secure(root, &tree)
}

/// Makes `dir` and everything below it root-only by the same rules as [`secure_tree`] (a
/// CRIU image directory 0711 with files 0644), for what runc and CRIU just wrote there with
/// their own modes (a dump's images and statistics, a restore's work files): a later start
/// then finds nothing to repair. Returns the entries it changed.
pub fn secure_subtree(dir: &Path) -> Result<Vec<PathBuf>> {
    let tree = Tree {
        mounts: HashSet::new(),
        traverse: HashSet::new(),
        runc_root: PathBuf::new(),
        sandboxes: PathBuf::new(),
    };
    secure(dir, &tree)
}

/// [`walk`] from `top` with the rules of `tree`; the entries it changed.
fn secure(top: &Path, tree: &Tree) -> Result<Vec<PathBuf>> {
    let meta = std::fs::symlink_metadata(top).map_err(RuntimeError::io("inspecting", top))?;
    let mut changed = Vec::new();
    walk(top, &meta, tree, false, &mut changed)?;
    Ok(changed)
}

/// What [`walk`] must not enter, and which directories are traverse-only.
struct Tree {
    mounts: HashSet<PathBuf>,
    traverse: HashSet<PathBuf>,
    /// runc's state root: runc makes each container's state directory 0711 (its files
    /// 0600), which is kept rather than changed at every start (0700 is kept too).
    runc_root: PathBuf,
    /// The sandboxes' directories' parent: each one's volume views directory is
    /// traverse-only (a restore opens the views from inside the sandbox's user namespace).
    sandboxes: PathBuf,
}

impl Tree {
    /// Whether directory `path` is one to traverse only (0711) rather than close (0700).
    fn traverse_only(&self, path: &Path) -> bool {
        self.traverse.contains(path)
            || (path.file_name() == Some(std::ffi::OsStr::new(crate::volume::VIEWS_DIR))
                && path.parent().and_then(Path::parent) == Some(self.sandboxes.as_path()))
    }
}

/// Mode of the directories on the way to sandboxes' root file systems.
const TRAVERSE_ONLY: u32 = 0o711;

fn mode_of(path: &Path) -> Result<u32> {
    Ok(std::fs::symlink_metadata(path)
        .map_err(RuntimeError::io("inspecting", path))?
        .mode()
        & 0o7777)
}

/// Hands a sandbox's directory to its root id (`Some`) while its container
/// runs, or back to host root (`None`); the mode stays 0700.
pub fn own_sandbox_dir(dir: &Path, owner: Option<u32>) -> Result<()> {
    let id = owner.unwrap_or(0);
    std::os::unix::fs::lchown(dir, Some(id), Some(id))
        .map_err(RuntimeError::io("changing the owner of", dir))?;
    set_mode(dir, 0o700)
}

/// Checks that every directory above `dir` can be entered by other users:
/// runc, inside a sandbox's user namespace, must walk to its root file
/// system under `dir`.
pub fn check_ancestors_searchable(dir: &Path) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = mode_of(ancestor)?;
        if mode & 0o001 == 0 {
            return Err(RuntimeError::Config(format!(
                "{} (above the data directory) is mode {mode:o}: other users cannot enter it, \
                 but sandboxes' user namespaces must (chmod o+x it or pick another --data-dir)",
                ancestor.display()
            )));
        }
    }
    Ok(())
}

fn walk(
    path: &Path,
    meta: &std::fs::Metadata,
    tree: &Tree,
    in_images: bool,
    changed: &mut Vec<PathBuf>,
) -> Result<()> {
    let mode = meta.mode() & 0o7777;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        let images = is_criu_images(path);
        let want = if images || tree.traverse_only(path) {
            TRAVERSE_ONLY
        } else {
            0o700
        };
        let runc_state = mode == TRAVERSE_ONLY && path.parent() == Some(tree.runc_root.as_path());
        if mode != want && !runc_state {
            set_mode(path, want)?;
            changed.push(path.to_path_buf());
        }
        let entries = std::fs::read_dir(path).map_err(RuntimeError::io("listing", path))?;
        for entry in entries.flatten() {
            let child = entry.path();
            if tree.mounts.contains(&child) {
                continue;
            }
            let Ok(child_meta) = std::fs::symlink_metadata(&child) else {
                continue;
            };
            walk(&child, &child_meta, tree, images, changed)?;
        }
        return Ok(());
    }
    let want = if in_images { 0o644 } else { 0o600 };
    if meta.is_file() && mode != want {
        set_mode(path, want)?;
        changed.push(path.to_path_buf());
    } else if !meta.is_file() && mode & 0o7077 != 0 {
        // Sockets, fifos: owner only.
        set_mode(path, mode & 0o700)?;
        changed.push(path.to_path_buf());
    }
    Ok(())
}

/// Closes a directory to other users (0700) without touching what is inside.
pub fn close_dir(dir: &Path) -> Result<bool> {
    let meta = std::fs::symlink_metadata(dir).map_err(RuntimeError::io("inspecting", dir))?;
    if meta.is_dir() && meta.mode() & 0o7777 != 0o700 {
        set_mode(dir, 0o700)?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("meta").mode() & 0o7777
    }

    #[test]
    fn repairs_modes_and_keeps_criu_images_readable_inside() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("data");
        let images = root.join("sandboxes/x/checkpoint");
        std::fs::create_dir_all(&images).expect("mkdir");
        std::fs::write(images.join(CRIU_INVENTORY), b"x").expect("write");
        std::fs::write(images.join("pages-1.img"), b"x").expect("write");
        std::fs::write(root.join("sandboxes/x/disk.img"), b"x").expect("write");
        std::fs::write(root.join("secrets.key"), b"x").expect("write");
        set_mode(&root.join("sandboxes/x/disk.img"), 0o4755).expect("chmod");
        set_mode(&root.join("sandboxes"), 0o755).expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
        let changed = secure_tree(&root).expect("secure");
        assert!(changed.len() >= 4, "{changed:?}");
        assert!(changed.contains(&root.join("secrets.key")), "{changed:?}");
        assert_eq!(mode(&root), 0o711);
        assert_eq!(mode(&root.join("sandboxes")), 0o711);
        assert_eq!(mode(&root.join("sandboxes/x")), 0o700);
        assert_eq!(mode(&root.join("sandboxes/x/disk.img")), 0o600);
        assert_eq!(mode(&root.join("secrets.key")), 0o600);
        assert_eq!(mode(&images), 0o711);
        assert_eq!(mode(&images.join("pages-1.img")), 0o644);
        assert_ne!(
            mode(Path::new("/etc/passwd")),
            0o600,
            "symlinks are not followed"
        );
        assert_eq!(
            secure_tree(&root).expect("again"),
            Vec::<PathBuf>::new(),
            "idempotent"
        );
        set_mode(tmp.path(), 0o711).expect("chmod");
        assert!(check_ancestors_searchable(&root).is_ok());
        set_mode(tmp.path(), 0o700).expect("chmod");
        assert!(check_ancestors_searchable(&root).is_err());
    }

    #[test]
    fn a_sandboxs_volume_views_directory_stays_traverse_only() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("data");
        let views = root.join("sandboxes/x/vols");
        std::fs::create_dir_all(views.join("v1")).expect("mkdir");
        set_mode(&root, 0o711).expect("chmod");
        set_mode(&root.join("sandboxes"), 0o711).expect("chmod");
        set_mode(&root.join("sandboxes/x"), 0o700).expect("chmod");
        set_mode(&views, 0o711).expect("chmod");
        set_mode(&views.join("v1"), 0o700).expect("chmod");
        // Elsewhere a directory of that name is closed as any other.
        let elsewhere = root.join("sandboxes/x/upper/vols");
        std::fs::create_dir_all(&elsewhere).expect("mkdir");
        set_mode(&root.join("sandboxes/x/upper"), 0o700).expect("chmod");
        set_mode(&elsewhere, 0o711).expect("chmod");
        assert_eq!(secure_tree(&root).expect("secure"), vec![elsewhere.clone()]);
        assert_eq!(mode(&views), 0o711);
        assert_eq!(mode(&elsewhere), 0o700);
    }

    #[test]
    fn a_dump_and_its_work_files_are_tightened_as_written() {
        let tmp = tempfile::tempdir().expect("tmp");
        // As runc and CRIU leave them: the image directory 0600, statistics 0644.
        let images = tmp.path().join("criu");
        std::fs::create_dir(&images).expect("mkdir");
        std::fs::write(images.join(CRIU_INVENTORY), b"x").expect("write");
        set_mode(&images, 0o600).expect("chmod");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).expect("mkdir");
        std::fs::write(work.join("stats-dump"), b"x").expect("write");
        set_mode(&work, 0o755).expect("chmod");
        set_mode(&work.join("stats-dump"), 0o644).expect("chmod");

        assert_eq!(secure_subtree(&images).expect("images").len(), 1);
        assert_eq!(
            mode(&images),
            0o711,
            "restores read it from the sandbox's namespace"
        );
        assert_eq!(mode(&images.join(CRIU_INVENTORY)), 0o644);
        assert_eq!(secure_subtree(&work).expect("work").len(), 2);
        assert_eq!(mode(&work), 0o700);
        assert_eq!(mode(&work.join("stats-dump")), 0o600);
        assert!(secure_subtree(&work).expect("again").is_empty());

        // A file written over one with a wider mode gets the narrow one.
        let file = tmp.path().join("marker");
        std::fs::write(&file, b"old").expect("write");
        set_mode(&file, 0o666).expect("chmod");
        write_file(&file, b"new", 0o600).expect("write_file");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).expect("read"), b"new");
    }
}
