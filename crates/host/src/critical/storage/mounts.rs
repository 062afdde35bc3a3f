//! `proc/self/mountinfo` and `proc/swaps`, read leniently: a line that does
//! not parse is skipped with a warning, never fatal.

/// One line of mountinfo, the fields dom0-storage detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    /// `st_dev` of the filesystem's root.
    pub major: u32,
    /// Minor number of `st_dev`.
    pub minor: u32,
    /// Where it is mounted, unescaped.
    pub mount_point: String,
    /// `ext4`, `btrfs`, `overlay`, ...
    pub fstype: String,
    /// `/dev/nvme0n1p2`, `overlay`, ..., unescaped.
    pub source: String,
}

/// One active swap area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Swap {
    /// The device or file, unescaped.
    pub path: String,
    /// `true` for a swap file, `false` for a partition (or whole device).
    pub is_file: bool,
}

/// The mounts in file order; garbled lines become warnings.
pub(super) fn parse_mountinfo(text: &str, warnings: &mut Vec<String>) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_mount(line) {
            Some(m) => mounts.push(m),
            None => warnings.push(format!(
                "proc/self/mountinfo line {} is garbled, skipped: {}",
                n + 1,
                shorten(line)
            )),
        }
    }
    mounts
}

fn parse_mount(line: &str) -> Option<Mount> {
    // id parent MAJ:MIN root mount-point options [optional...] - fstype source super-options
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|f| *f == "-")?;
    if dash < 6 {
        return None;
    }
    let (major, minor) = parse_dev(fields.get(2)?)?;
    let mount_point = unescape(fields.get(4)?);
    if !mount_point.starts_with('/') {
        return None;
    }
    Some(Mount {
        major,
        minor,
        mount_point,
        fstype: (*fields.get(dash + 1)?).to_owned(),
        source: unescape(fields.get(dash + 2)?),
    })
}

/// `MAJ:MIN` as in mountinfo and sysfs `dev` files.
fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The active swaps; the header line is skipped, garbled lines warn.
pub(super) fn parse_swaps(text: &str, warnings: &mut Vec<String>) -> Vec<Swap> {
    let mut swaps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let (Some(path), kind) = (fields.next(), fields.next()) else {
            continue;
        };
        if n == 0 && path == "Filename" {
            continue;
        }
        let path = unescape(path);
        // A swap file removed while active stays listed with this suffix.
        let path = path.strip_suffix(" (deleted)").unwrap_or(&path).to_owned();
        match kind {
            Some("file") if path.starts_with('/') => swaps.push(Swap {
                path,
                is_file: true,
            }),
            Some("partition") if path.starts_with('/') => swaps.push(Swap {
                path,
                is_file: false,
            }),
            _ => warnings.push(format!(
                "proc/swaps line {} is garbled, skipped: {}",
                n + 1,
                shorten(line)
            )),
        }
    }
    swaps
}

/// Undoes the kernel's octal escapes (`\040` for a space) in paths.
pub(super) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount whose mount point is the longest path prefix of `path`; the
/// last such mount when several stack on one point (it hides the others).
pub(super) fn mount_holding<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| is_under(path, &m.mount_point))
        .fold(None, |best: Option<&Mount>, m| match best {
            Some(b) if b.mount_point.len() > m.mount_point.len() => Some(b),
            _ => Some(m),
        })
}

fn is_under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A line cut for a warning, so a garbled file cannot flood the output.
fn shorten(line: &str) -> String {
    const MAX: usize = 120;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &line[..cut]),
        None => format!("{line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    30 27 259:2 / /boot rw - vfat /dev/nvme0n1p1 rw\n\
                    31 27 0:40 /@home /home\\040dir rw master:2 shared:3 - btrfs /dev/mapper/luks\\040x rw,subvol=/@home\n";
        let mut warnings = Vec::new();
        let mounts = parse_mountinfo(text, &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(mounts.len(), 3);
        assert_eq!((mounts[0].major, mounts[0].minor), (254, 0));
        assert_eq!(mounts[0].source, "/dev/vda");
        assert_eq!(mounts[2].mount_point, "/home dir");
        assert_eq!(mounts[2].fstype, "btrfs");
        assert_eq!(mounts[2].source, "/dev/mapper/luks x");
    }

    #[test]
    fn garbled_mountinfo_lines_warn() {
        let text = "garbage\n27 1 x:y / / rw - ext4 /dev/vda rw\n1 2 3\n\n27 1 8:1 / / rw - ext4 /dev/sda1 rw\n- - - - - -\n";
        let mut warnings = Vec::new();
        let mounts = parse_mountinfo(text, &mut warnings);
        assert_eq!(mounts.len(), 1);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("line 1"));
    }

    #[test]
    fn swaps_partitions_files_and_garbage() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/nvme0n1p3                          partition\t16777212\t0\t-2\n\
                    /swap\\040file\\040(deleted) file 1024 0 -3\n\
                    /dev/zram0 weird 1 0 0\n";
        let mut warnings = Vec::new();
        let swaps = parse_swaps(text, &mut warnings);
        assert_eq!(
            swaps,
            vec![
                Swap {
                    path: "/dev/nvme0n1p3".into(),
                    is_file: false
                },
                Swap {
                    path: "/swap file".into(),
                    is_file: true
                }
            ]
        );
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn unescape_is_total() {
        assert_eq!(unescape("a\\040b\\011c\\134"), "a b\tc\\");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("\\04"), "\\04");
        assert_eq!(unescape("\\777"), "?");
        assert_eq!(unescape("\\08x"), "\\08x");
    }

    #[test]
    fn holding_mount_is_the_longest_prefix() {
        let m = |p: &str| Mount {
            major: 8,
            minor: 1,
            mount_point: p.into(),
            fstype: "ext4".into(),
            source: p.into(),
        };
        let mounts = vec![m("/"), m("/var"), m("/var/lib"), m("/variable")];
        assert_eq!(
            mount_holding(&mounts, "/var/lib/swap").map(|m| m.mount_point.as_str()),
            Some("/var/lib")
        );
        assert_eq!(
            mount_holding(&mounts, "/variable2/x").map(|m| m.mount_point.as_str()),
            Some("/")
        );
        assert_eq!(
            mount_holding(&mounts, "/var").map(|m| m.mount_point.as_str()),
            Some("/var")
        );
        assert_eq!(mount_holding(&mounts, "relative"), None);
    }
}
