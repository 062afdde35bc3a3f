//! Who is on the other end of a connection (`SO_PEERCRED`) and whether
//! they may talk to the daemon.
//!
//! Allowed: root, the daemon's own uid, every `--allow-uid`, and in system
//! mode the members of group `qubes` (the peer's primary gid, its
//! supplementary groups from `/proc/<pid>/status`, or the group's member
//! list in `/etc/group`). A refused peer's request is read (capped, with the
//! timeout) and answered `2\0PermissionDenied\0\0<why>\0`, so the client
//! reports the refusal instead of a broken pipe.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The peer's credentials at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Process id, when the kernel reports one.
    pub pid: Option<i32>,
}

impl Peer {
    /// The credentials of a connected Unix stream.
    pub fn of(stream: &tokio::net::UnixStream) -> std::io::Result<Self> {
        let cred = stream.peer_cred()?;
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
    }
}

/// The group whose members may connect in system mode.
pub const QUBES_GROUP: &str = "qubes";

/// Why the group could not be found.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No such group in `/etc/group`.
    #[error("group '{0}' does not exist (create it with `groupadd {0}` and add the admin users)")]
    Missing(String),
}

/// A group's id and the uids of its members (by `/etc/group` and primary gid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// The group id.
    pub gid: u32,
    /// Members' uids known from `/etc/group` and `/etc/passwd`.
    pub member_uids: BTreeSet<u32>,
}

impl Group {
    /// Reads `name` from `etc/group` and `etc/passwd` under `root`.
    pub fn lookup(root: &Path, name: &str) -> Result<Self, GroupError> {
        let group = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
        Self::parse(&group, &passwd, name).ok_or_else(|| GroupError::Missing(name.to_owned()))
    }

    /// Finds `name` in `group` text and its members' uids in `passwd` text.
    pub fn parse(group: &str, passwd: &str, name: &str) -> Option<Self> {
        let (gid, members) = group.lines().find_map(|line| {
            let mut f = line.split(':');
            let (n, _, gid, members) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (n == name).then(|| (gid.trim().parse::<u32>().ok(), members))
        })?;
        let gid = gid?;
        let names: BTreeSet<&str> = members
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        let member_uids = passwd
            .lines()
            .filter_map(|line| {
                let mut f = line.split(':');
                let (user, _, uid, pgid) = (f.next()?, f.next()?, f.next()?, f.next()?);
                let uid = uid.parse::<u32>().ok()?;
                let primary = pgid.parse::<u32>().ok() == Some(gid);
                (primary || names.contains(user)).then_some(uid)
            })
            .collect();
        Some(Self { gid, member_uids })
    }
}

/// The set of peers allowed to connect.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    uids: BTreeSet<u32>,
    group: Option<Group>,
}

impl Policy {
    /// Root, `own_uid` and `extra`; plus `group`'s members when given.
    pub fn new(own_uid: u32, extra: &[u32], group: Option<Group>) -> Self {
        let mut uids: BTreeSet<u32> = extra.iter().copied().collect();
        uids.insert(0);
        uids.insert(own_uid);
        Self { uids, group }
    }

    /// Whether `peer` may talk to the daemon.
    pub fn allows(&self, peer: &Peer) -> bool {
        if self.uids.contains(&peer.uid) {
            return true;
        }
        let Some(group) = &self.group else {
            return false;
        };
        peer.gid == group.gid
            || group.member_uids.contains(&peer.uid)
            || peer
                .pid
                .is_some_and(|pid| proc_groups(pid).contains(&group.gid))
    }

    /// The refusal text for `peer`.
    pub fn refusal(&self, peer: &Peer) -> String {
        let group = match &self.group {
            Some(_) => format!(", or members of group '{QUBES_GROUP}'"),
            None => String::new(),
        };
        let uids: Vec<String> = self.uids.iter().map(u32::to_string).collect();
        format!(
            "uid {} may not use qpcid (allowed: uids {}{group}; the daemon's --allow-uid adds more)",
            peer.uid,
            uids.join(", ")
        )
    }
}

/// The supplementary groups of a process (`Groups:` of `/proc/<pid>/status`).
fn proc_groups(pid: i32) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "root:x:0:\nqubes:x:998:alice,bob\nother:x:5:carol\n";
    const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/h:/bin/sh\nbob:x:1001:1001::/h:/bin/sh\ncarol:x:1002:1002::/h:/bin/sh\ndan:x:1003:998::/h:/bin/sh\n";

    #[test]
    fn group_members_from_list_and_primary_gid() {
        let g = Group::parse(GROUP, PASSWD, "qubes").unwrap();
        assert_eq!(g.gid, 998);
        assert_eq!(
            g.member_uids,
            [1000, 1001, 1003].into_iter().collect::<BTreeSet<_>>()
        );
        assert!(Group::parse(GROUP, PASSWD, "nope").is_none());
    }

    #[test]
    fn policy() {
        let peer = |uid, gid| Peer {
            uid,
            gid,
            pid: None,
        };
        let user = Policy::new(1000, &[2000], None);
        assert!(user.allows(&peer(0, 0)));
        assert!(user.allows(&peer(1000, 1000)));
        assert!(user.allows(&peer(2000, 2000)));
        assert!(!user.allows(&peer(1001, 998)));
        assert!(user.refusal(&peer(1001, 998)).contains("uid 1001"));
        let g = Group::parse(GROUP, PASSWD, "qubes").unwrap();
        let system = Policy::new(0, &[], Some(g));
        assert!(system.allows(&peer(1001, 1001)));
        assert!(system.allows(&peer(4242, 998)));
        assert!(!system.allows(&peer(1002, 1002)));
    }
}
