//! Resolving the protocol's `user` field against the sandbox's `/etc/passwd` and `/etc/group`.
//!
//! The agent is linked statically against glibc, where `getpwnam` and friends need NSS
//! modules loaded at run time from the *image*, which may not have them. The files are parsed
//! directly instead, and re-read for every request, because users may be added at any time
//! (`useradd` through `run`).
//!
//! Rules (as Docker's `--user`): `NAME` must exist; a numeric `UID` need not, and then its
//! group is 0 and its home `/`; `:GROUP` overrides the primary group. Supplementary groups are
//! those of `/etc/group` that list the user by name.

use std::path::Path;

use alcove_wire::process::{UserIds, UserSpec};

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Names of supplementary members.
    pub members: Vec<String>,
}

/// The parsed user and group databases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    /// Entries of `/etc/passwd`, in file order.
    pub users: Vec<PasswdEntry>,
    /// Entries of `/etc/group`, in file order.
    pub groups: Vec<GroupEntry>,
}

fn parse_passwd_line(line: &str) -> Option<PasswdEntry> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 7 || line.starts_with('#') {
        return None;
    }
    Some(PasswdEntry {
        name: fields[0].to_string(),
        uid: fields[2].parse().ok()?,
        gid: fields[3].parse().ok()?,
        home: fields[5].to_string(),
    })
}

fn parse_group_line(line: &str) -> Option<GroupEntry> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 4 || line.starts_with('#') {
        return None;
    }
    Some(GroupEntry {
        name: fields[0].to_string(),
        gid: fields[2].parse().ok()?,
        members: fields[3]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect(),
    })
}

impl UserDb {
    /// Parses the texts of `/etc/passwd` and `/etc/group`, skipping malformed lines.
    pub fn parse(passwd: &str, group: &str) -> Self {
        Self {
            users: passwd.lines().filter_map(parse_passwd_line).collect(),
            groups: group.lines().filter_map(parse_group_line).collect(),
        }
    }

    /// Reads both files; a missing or unreadable file counts as empty (minimal images), as
    /// does one that is not a regular file, and only its first [`USER_DB_MAX_BYTES`] are read.
    /// The sandbox owns these files: a FIFO in their place must not block the agent's
    /// thread, nor a link to `/dev/zero` fill its memory.
    pub fn load(passwd: &Path, group: &Path) -> Self {
        Self::parse(&read_user_db(passwd), &read_user_db(group))
    }

    /// The first user named `name`.
    pub fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The first user with id `uid`.
    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    /// The first group named `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// The most of `/etc/passwd` or `/etc/group` the agent reads (a real one is a few KiB).
pub const USER_DB_MAX_BYTES: u64 = 4 << 20;

/// The text of a regular file at `path` (links followed), at most [`USER_DB_MAX_BYTES`] of
/// it; empty for anything else. Opened without blocking, so a FIFO answers at once.
fn read_user_db(path: &Path) -> String {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    else {
        return String::new();
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file
        .take(USER_DB_MAX_BYTES)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Why a `user` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The user value is empty.
    #[error("user must not be empty")]
    Empty,
    /// The named user is not in /etc/passwd.
    #[error("unknown user {0:?}: not in /etc/passwd")]
    UnknownUser(String),
    /// The named group is not in /etc/group.
    #[error("unknown group {0:?}: not in /etc/group")]
    UnknownGroup(String),
    /// The id is not mapped in the sandbox's user namespace, so no process can take it.
    #[error("{kind} {id} does not exist in this sandbox (its {kind}s are {ranges})")]
    Unmapped {
        /// `uid` or `gid`.
        kind: &'static str,
        /// The id asked for.
        id: u32,
        /// The mapped ranges, as `0-65535`.
        ranges: String,
    },
}

/// The ids of one kind that this user namespace maps (`/proc/self/uid_map` or `gid_map`):
/// `(first, count)` ranges. Ids outside them cannot be set (EINVAL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRanges(Vec<(u32, u32)>);

impl IdRanges {
    /// Parses a `uid_map` / `gid_map` (`inside outside count` per line).
    pub fn parse(map: &str) -> Self {
        Self(
            map.lines()
                .filter_map(|line| {
                    let mut fields = line.split_whitespace().map(str::parse::<u32>);
                    let first = fields.next()?.ok()?;
                    let _outside = fields.next()?.ok()?;
                    let count = fields.next()?.ok()?;
                    Some((first, count))
                })
                .collect(),
        )
    }

    /// Whether `id` is mapped.
    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|&(first, count)| {
            id >= first && u64::from(id) < u64::from(first) + u64::from(count)
        })
    }

    fn check(&self, kind: &'static str, id: u32) -> Result<(), UserError> {
        if self.contains(id) {
            return Ok(());
        }
        let ranges = self
            .0
            .iter()
            .map(|&(first, count)| {
                let last = u64::from(first) + u64::from(count.max(1)) - 1;
                format!("{first}-{last}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(UserError::Unmapped { kind, id, ranges })
    }
}

/// This process's user namespace's uid and gid ranges, read once (they never change).
fn own_ranges() -> &'static (IdRanges, IdRanges) {
    static RANGES: std::sync::OnceLock<(IdRanges, IdRanges)> = std::sync::OnceLock::new();
    RANGES.get_or_init(|| {
        let read = |path: &str| {
            // Unreadable (no /proc): everything counts as mapped, as in the initial namespace.
            std::fs::read_to_string(path)
                .map(|m| IdRanges::parse(&m))
                .unwrap_or(IdRanges(vec![(0, u32::MAX)]))
        };
        (read("/proc/self/uid_map"), read("/proc/self/gid_map"))
    })
}

/// Who a process runs as, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (including the primary one).
    pub groups: Vec<u32>,
    /// Login name, when `/etc/passwd` knows the uid.
    pub name: Option<String>,
    /// Home directory, when `/etc/passwd` knows the uid.
    pub home: Option<String>,
}

impl Identity {
    fn from_entry(entry: &PasswdEntry) -> Self {
        Self {
            uid: entry.uid,
            gid: entry.gid,
            groups: Vec::new(),
            name: Some(entry.name.clone()),
            home: Some(entry.home.clone()),
        }
    }

    fn from_uid(uid: u32, db: &UserDb) -> Self {
        db.user_by_uid(uid).map(Self::from_entry).unwrap_or(Self {
            uid,
            gid: 0,
            groups: Vec::new(),
            name: None,
            home: None,
        })
    }

    fn fill_groups(mut self, db: &UserDb) -> Self {
        let mut groups = vec![self.gid];
        if let Some(name) = &self.name {
            for group in &db.groups {
                if group.members.iter().any(|m| m == name) && !groups.contains(&group.gid) {
                    groups.push(group.gid);
                }
            }
        }
        self.groups = groups;
        self
    }
}

fn resolve_user_part(part: &str, db: &UserDb) -> Result<Identity, UserError> {
    if part.is_empty() {
        return Err(UserError::Empty);
    }
    if let Ok(uid) = part.parse::<u32>() {
        return Ok(Identity::from_uid(uid, db));
    }
    db.user_by_name(part)
        .map(Identity::from_entry)
        .ok_or_else(|| UserError::UnknownUser(part.to_string()))
}

fn resolve_group_part(part: &str, db: &UserDb) -> Result<u32, UserError> {
    if let Ok(gid) = part.parse::<u32>() {
        return Ok(gid);
    }
    db.group_by_name(part)
        .map(|g| g.gid)
        .ok_or_else(|| UserError::UnknownGroup(part.to_string()))
}

fn resolve_ids(ids: &UserIds, db: &UserDb) -> Result<Identity, UserError> {
    let mut identity = match (&ids.name, ids.uid) {
        (Some(name), _) => resolve_user_part(name, db)?,
        (None, Some(uid)) => Identity::from_uid(uid, db),
        (None, None) => return Err(UserError::Empty),
    };
    if let Some(uid) = ids.uid {
        identity.uid = uid;
    }
    if let Some(gid) = ids.gid {
        identity.gid = gid;
    }
    Ok(identity)
}

/// Resolves a requested user; `None` means the agent's own `current_uid`.
pub fn resolve(
    spec: Option<&UserSpec>,
    db: &UserDb,
    current_uid: u32,
) -> Result<Identity, UserError> {
    let identity = match spec {
        None => Identity::from_uid(current_uid, db),
        Some(UserSpec::Text(text)) => {
            let text = text.trim();
            match text.split_once(':') {
                Some((user, group)) => {
                    let mut identity = resolve_user_part(user, db)?;
                    identity.gid = resolve_group_part(group, db)?;
                    identity
                }
                None => resolve_user_part(text, db)?,
            }
        }
        Some(UserSpec::Ids(ids)) => resolve_ids(ids, db)?,
    };
    let (uids, gids) = own_ranges();
    within(identity.fill_groups(db), uids, gids)
}

/// `identity` when its uid and gid are mapped (else why not), with the supplementary groups
/// that are not mapped left out: /etc/group may list them, but no process can hold them.
fn within(mut identity: Identity, uids: &IdRanges, gids: &IdRanges) -> Result<Identity, UserError> {
    uids.check("uid", identity.uid)?;
    gids.check("gid", identity.gid)?;
    identity.groups.retain(|&g| gids.contains(g));
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App User,,,:/home/app:/bin/sh\n\
        broken:line\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:app\ndocker:x:999:app,other\napp:x:1000:\n";

    fn db_from_files() -> UserDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::File::create(&passwd)
            .and_then(|mut f| f.write_all(PASSWD.as_bytes()))
            .expect("write passwd");
        std::fs::write(&group, GROUP).expect("write group");
        UserDb::load(&passwd, &group)
    }

    #[test]
    fn a_user_db_that_is_no_regular_file_reads_as_empty_and_a_big_one_is_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A FIFO with no writer: opening it for reading would block without O_NONBLOCK.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        for odd in [&fifo, &zero, &dir.path().to_path_buf()] {
            assert_eq!(read_user_db(odd), "", "{}", odd.display());
        }
        let big = dir.path().join("big");
        let line = "u:x:5:5::/:/bin/sh\n";
        let count = USER_DB_MAX_BYTES as usize / line.len() + 10;
        std::fs::write(&big, line.repeat(count)).expect("write");
        assert_eq!(read_user_db(&big).len() as u64, USER_DB_MAX_BYTES);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).expect("symlink");
        // The whole lines within the cap, and the cut one if it still parses.
        let users = UserDb::load(&link, &fifo).users.len();
        let whole = USER_DB_MAX_BYTES as usize / line.len();
        assert!(
            (whole..=whole + 1).contains(&users) && users < count,
            "{users}"
        );
    }

    #[test]
    fn parses_files_and_skips_malformed_lines() {
        let db = db_from_files();
        assert_eq!(db.users.len(), 3);
        assert_eq!(
            db.user_by_name("app").map(|u| u.home.as_str()),
            Some("/home/app")
        );
        assert_eq!(db.group_by_name("docker").map(|g| g.members.len()), Some(2));
    }

    #[test]
    fn missing_files_are_empty() {
        let db = UserDb::load(
            Path::new("/nonexistent/passwd"),
            Path::new("/nonexistent/group"),
        );
        assert_eq!(db, UserDb::default());
    }

    #[test]
    fn resolves_names_with_supplementary_groups() {
        let db = db_from_files();
        let app = resolve(Some(&UserSpec::Text("app".into())), &db, 0).expect("app");
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.groups, [1000, 100, 999]);
        assert_eq!(app.home.as_deref(), Some("/home/app"));
    }

    #[test]
    fn resolves_numeric_and_group_forms() {
        let db = db_from_files();
        let known = resolve(Some(&UserSpec::Text("1000:100".into())), &db, 0).expect("ids");
        assert_eq!(
            (known.uid, known.gid, known.name.as_deref()),
            (1000, 100, Some("app"))
        );
        let unknown = resolve(Some(&UserSpec::Text("4242".into())), &db, 0).expect("uid");
        assert_eq!((unknown.uid, unknown.gid, unknown.home), (4242, 0, None));
        let named_group =
            resolve(Some(&UserSpec::Text("root:docker".into())), &db, 1000).expect("group");
        assert_eq!((named_group.uid, named_group.gid), (0, 999));
    }

    #[test]
    fn resolves_object_forms() {
        let db = db_from_files();
        let by_name = UserSpec::Ids(UserIds {
            name: Some("app".into()),
            ..UserIds::default()
        });
        assert_eq!(resolve(Some(&by_name), &db, 0).map(|i| i.uid), Ok(1000));
        let by_ids = UserSpec::Ids(UserIds {
            name: None,
            uid: Some(1000),
            gid: Some(5),
        });
        let identity = resolve(Some(&by_ids), &db, 0).expect("ids");
        assert_eq!((identity.uid, identity.gid), (1000, 5));
        assert_eq!(
            resolve(Some(&UserSpec::Ids(UserIds::default())), &db, 0),
            Err(UserError::Empty)
        );
    }

    #[test]
    fn default_is_the_current_user() {
        let db = db_from_files();
        let me = resolve(None, &db, 0).expect("root");
        assert_eq!(me.name.as_deref(), Some("root"));
        assert_eq!(me.home.as_deref(), Some("/root"));
    }

    #[test]
    fn ids_outside_the_namespace_are_refused_and_unmapped_groups_left_out() {
        let map = IdRanges::parse("         0     165536      65536\n");
        assert!(map.contains(0) && map.contains(65535) && !map.contains(65536));
        let who = |uid, gid, groups: &[u32]| Identity {
            uid,
            gid,
            groups: groups.to_vec(),
            name: None,
            home: None,
        };
        let kept = within(who(1000, 1000, &[1000, 70000]), &map, &map).expect("mapped");
        assert_eq!(kept.groups, vec![1000]);
        let err = within(who(70000, 0, &[0]), &map, &map).expect_err("uid");
        assert_eq!(
            err.to_string(),
            "uid 70000 does not exist in this sandbox (its uids are 0-65535)"
        );
        let err = within(who(0, u32::MAX, &[]), &map, &map).expect_err("gid");
        assert!(err.to_string().starts_with("gid 4294967295 "), "{err}");
        // The initial namespace maps every id.
        let all = IdRanges::parse("0 0 4294967295");
        assert!(all.contains(4_294_967_294));
    }

    #[test]
    fn unknown_names_are_errors() {
        let db = db_from_files();
        assert_eq!(
            resolve(Some(&UserSpec::Text("nobody-here".into())), &db, 0),
            Err(UserError::UnknownUser("nobody-here".into()))
        );
        assert_eq!(
            resolve(Some(&UserSpec::Text("app:nogroup".into())), &db, 0),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
        assert_eq!(
            resolve(Some(&UserSpec::Text(" ".into())), &db, 0),
            Err(UserError::Empty)
        );
    }
}
