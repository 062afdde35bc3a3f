//! Finding the host driver of a device as `modprobe -R <modalias>` does
//! (spec/linux-pci.md §6).
//!
//! Sources are tried in kmod's order and the first with any match wins:
//! `alias` lines of modprobe.d, then `modules.alias`, then the aliases of
//! built-in modules (`modules.builtin.modinfo`, the NUL-separated
//! `<module>.alias=<pattern>` records depmod compiles into
//! `modules.builtin.alias.bin`). All matches of the winning source are
//! returned in depmod's module order (`modules.order`), never ranked by
//! how specific the pattern is — kmod does not rank either. Blacklisted
//! modules are returned, flagged: `modprobe -R` lists them, `modprobe`
//! skips them.
//!
//! A module's name is often not its PCI driver's name (`xhci_pci`
//! registers `xhci_hcd`, `virtio_pci` registers `virtio-pci`):
//! [`module_drivers`] reads `sys/module/<m>/drivers/pci:<driver>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::HostRoot;

/// Why no host driver could be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModaliasError {
    /// The device's `modalias` is empty.
    #[error("{file}: modalias is empty; the host driver cannot be looked up")]
    Empty {
        /// The file read.
        file: PathBuf,
    },
    /// The `modalias` is not the kernel's PCI form.
    #[error(
        "{file}: modalias {text:?} is not pci:vVVVVVVVVdDDDDDDDDsvSSSSSSSSsdSSSSSSSSbcCCscSSiII; the host driver cannot be looked up"
    )]
    Garbled {
        /// The file read.
        file: PathBuf,
        /// What it held.
        text: String,
    },
    /// Neither `modules.alias` nor `modules.builtin.modinfo` exists.
    #[error(
        "no module index in {dir}: neither modules.alias nor modules.builtin.modinfo (run depmod for this kernel)"
    )]
    NoIndex {
        /// `lib/modules/<release>`.
        dir: PathBuf,
    },
    /// The running kernel's release is unknown and `lib/modules` does not
    /// hold exactly one release.
    #[error("cannot tell the kernel release: {0}")]
    NoRelease(String),
    /// No source matched.
    #[error("no module matches modalias {modalias} (modprobe -R would print \"not found\")")]
    NoMatch {
        /// The modalias.
        modalias: String,
    },
}

/// Where a match came from, in kmod's lookup order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AliasSource {
    /// An `alias` line in modprobe.d.
    ModprobeConf,
    /// `modules.alias`.
    ModulesAlias,
    /// `modules.builtin.modinfo`.
    Builtin,
}

/// One module that matches a modalias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMatch {
    /// Module name, with `_` (kmod's normal form).
    pub module: String,
    /// The pattern that matched.
    pub pattern: String,
    /// Where the match came from.
    pub source: AliasSource,
    /// Built into the kernel: nothing to load.
    pub builtin: bool,
    /// Named by a `blacklist` line: `modprobe` skips it for alias lookups.
    pub blacklisted: bool,
}

/// The module files of one kernel release plus modprobe.d, parsed.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    conf_aliases: Vec<(String, String)>,
    aliases: Vec<(String, String)>,
    builtin_aliases: Vec<(String, String)>,
    builtin: BTreeSet<String>,
    order: BTreeMap<String, usize>,
    blacklist: BTreeSet<String>,
}

/// `-` → `_`, as kmod compares module names.
pub fn normalize_module(name: &str) -> String {
    name.replace('-', "_")
}

/// `alias <pattern> <module>` lines of `modules.alias` whose pattern
/// passes `keep`. Only lines that can concern a PCI device (`alias pci:`,
/// or a pattern opening with a wildcard) are split at all: the other
/// subsystems' lines (usb, acpi, of, ...) are most of the file.
fn alias_lines(text: &[u8], keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(rest) = line.strip_prefix(b"alias ") else {
            continue;
        };
        if !(rest.starts_with(b"pci:") || rest.first().is_some_and(|b| b"*?[".contains(b))) {
            continue;
        }
        let Ok(rest) = std::str::from_utf8(rest) else {
            continue;
        };
        let mut w = rest.split_whitespace();
        if let (Some(pat), Some(m)) = (w.next(), w.next())
            && keep(pat)
        {
            out.push((pat.to_owned(), normalize_module(m)));
        }
    }
    out
}

/// `<module>.alias=<pattern>` records of `modules.builtin.modinfo` whose
/// pattern passes `keep`, as `(pattern, module)`.
fn builtin_alias_records(modinfo: &[u8], keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rec in modinfo.split(|b| *b == 0) {
        let Ok(rec) = std::str::from_utf8(rec) else {
            continue;
        };
        if let Some((key, value)) = rec.split_once('=')
            && let Some((module, "alias")) = key.rsplit_once('.')
            && keep(value)
        {
            out.push((value.to_owned(), normalize_module(module)));
        }
    }
    out
}

/// Module names (basename without `.ko`) listed in `dir/file`.
fn module_names(dir: &Path, file: &str) -> Vec<String> {
    fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| Path::new(l.trim()).file_name()?.to_str().map(str::to_owned))
        .filter_map(|f| f.strip_suffix(".ko").map(normalize_module))
        .collect()
}

/// Cheap pre-check before [`fnmatch`]: a pattern opening with a literal
/// can only match text opening with the same character.
fn could_match(pattern: &str, text: &str) -> bool {
    match pattern.as_bytes().first() {
        Some(b'*' | b'?' | b'[' | b'\\') | None => true,
        Some(c) => text.as_bytes().first() == Some(c),
    }
}

/// The running kernel's release: `proc/sys/kernel/osrelease`, else the
/// only directory in `lib/modules`.
pub fn kernel_release(root: &HostRoot) -> Result<String, ModaliasError> {
    if let Ok(text) = fs::read_to_string(root.join("proc/sys/kernel/osrelease")) {
        let t = text.trim();
        if !t.is_empty() && !t.contains('/') {
            return Ok(t.to_owned());
        }
    }
    let dirs: Vec<String> = fs::read_dir(root.join("lib/modules"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ModaliasError::NoRelease(
            "no proc/sys/kernel/osrelease and no lib/modules/<release>".into(),
        )),
        _ => Err(ModaliasError::NoRelease(format!(
            "no proc/sys/kernel/osrelease and lib/modules holds {} releases",
            dirs.len()
        ))),
    }
}

impl ModuleIndex {
    /// Reads `lib/modules/<release>` and modprobe.d under `root`: every
    /// alias of every source (what [`ModuleIndex::patterns_of`] needs).
    /// A give-back, which asks about one device, uses the cheaper
    /// [`ModuleIndex::load_for`].
    pub fn load(root: &HostRoot, release: &str) -> Result<Self, ModaliasError> {
        let dir = root.join(Path::new("lib/modules").join(release));
        let alias_file = fs::read(dir.join("modules.alias")).ok();
        let modinfo = fs::read(dir.join("modules.builtin.modinfo")).ok();
        if alias_file.is_none() && modinfo.is_none() {
            return Err(ModaliasError::NoIndex { dir });
        }
        let mut idx = Self {
            dir: dir.clone(),
            ..Self::default()
        };
        idx.aliases = alias_lines(alias_file.as_deref().unwrap_or(&[]), |_| true);
        idx.builtin_aliases = builtin_alias_records(modinfo.as_deref().unwrap_or(&[]), |_| true);
        idx.builtin
            .extend(idx.builtin_aliases.iter().map(|(_, m)| m.clone()));
        idx.builtin.extend(module_names(&dir, "modules.builtin"));
        idx.read_order();
        idx.read_modprobe_d(root, |_| true);
        Ok(idx)
    }

    /// Reads only what [`ModuleIndex::lookup`] of `modalias` needs, as kmod
    /// does for one lookup: the modprobe.d aliases and blacklist, then the
    /// `modules.alias` lines that can match (its `pci:` lines, matched as
    /// they are read; nothing else is parsed), the built-in aliases only
    /// when `modules.alias` has no match, and `modules.builtin` and
    /// `modules.order` only when something matched. The result answers
    /// `lookup(modalias)`, `is_blacklisted` and `is_builtin` of the matched
    /// modules; it holds no other aliases.
    pub fn load_for(root: &HostRoot, release: &str, modalias: &str) -> Result<Self, ModaliasError> {
        let dir = root.join(Path::new("lib/modules").join(release));
        let alias_path = dir.join("modules.alias");
        let modinfo_path = dir.join("modules.builtin.modinfo");
        if !alias_path.exists() && !modinfo_path.exists() {
            return Err(ModaliasError::NoIndex { dir });
        }
        let mut idx = Self {
            dir: dir.clone(),
            ..Self::default()
        };
        let wanted = |pat: &str| could_match(pat, modalias) && fnmatch(pat, modalias);
        idx.read_modprobe_d(root, wanted);
        if idx.conf_aliases.is_empty() {
            let text = fs::read(&alias_path).unwrap_or_default();
            idx.aliases = alias_lines(&text, wanted);
        }
        if idx.conf_aliases.is_empty() && idx.aliases.is_empty() {
            let modinfo = fs::read(&modinfo_path).unwrap_or_default();
            idx.builtin_aliases = builtin_alias_records(&modinfo, wanted);
            idx.builtin
                .extend(idx.builtin_aliases.iter().map(|(_, m)| m.clone()));
        }
        let matched = idx.conf_aliases.len() + idx.aliases.len() + idx.builtin_aliases.len();
        if matched > 0 {
            idx.builtin.extend(module_names(&dir, "modules.builtin"));
        }
        if matched > 1 {
            idx.read_order();
        }
        Ok(idx)
    }

    fn read_order(&mut self) {
        for (i, m) in module_names(&self.dir, "modules.order")
            .into_iter()
            .enumerate()
        {
            self.order.entry(m).or_insert(i);
        }
    }

    /// `alias` and `blacklist` lines of `{etc,run,usr/lib,lib}/modprobe.d/*.conf`;
    /// a file name met in an earlier directory hides the same name in later
    /// ones, and files are read in name order, as kmod does.
    /// Only the aliases whose pattern passes `keep` are kept.
    fn read_modprobe_d(&mut self, root: &HostRoot, keep: impl Fn(&str) -> bool) {
        let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
        for d in ["etc", "run", "usr/lib", "lib"] {
            let Ok(rd) = fs::read_dir(root.join(format!("{d}/modprobe.d"))) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                if let Some(name) = e.file_name().to_str()
                    && name.ends_with(".conf")
                {
                    files.entry(name.to_owned()).or_insert_with(|| e.path());
                }
            }
        }
        for path in files.values() {
            let text = fs::read_to_string(path).unwrap_or_default();
            for line in text.lines() {
                let mut w = line.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("alias"), Some(pat), Some(m)) if keep(pat) => {
                        self.conf_aliases
                            .push((pat.to_owned(), normalize_module(m)));
                    }
                    (Some("blacklist"), Some(m), _) => {
                        self.blacklist.insert(normalize_module(m));
                    }
                    _ => {}
                }
            }
        }
    }

    /// `lib/modules/<release>` this index was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `true` when `module` is built into the kernel.
    pub fn is_builtin(&self, module: &str) -> bool {
        self.builtin.contains(&normalize_module(module))
    }

    /// `true` when modprobe.d blacklists `module`.
    pub fn is_blacklisted(&self, module: &str) -> bool {
        self.blacklist.contains(&normalize_module(module))
    }

    /// Every pattern of `module` in `modules.alias` and the built-in aliases.
    pub fn patterns_of(&self, module: &str) -> Vec<&str> {
        let m = normalize_module(module);
        self.aliases
            .iter()
            .chain(&self.builtin_aliases)
            .filter(|(_, x)| *x == m)
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// Every module matching `modalias`, as `modprobe -R` lists them.
    pub fn lookup(&self, modalias: &str) -> Result<Vec<ModuleMatch>, ModaliasError> {
        let sources = [
            (AliasSource::ModprobeConf, &self.conf_aliases),
            (AliasSource::ModulesAlias, &self.aliases),
            (AliasSource::Builtin, &self.builtin_aliases),
        ];
        for (source, table) in sources {
            let mut found: Vec<ModuleMatch> = Vec::new();
            for (pat, module) in table.iter() {
                if found.iter().any(|m| &m.module == module) || !fnmatch(pat, modalias) {
                    continue;
                }
                found.push(ModuleMatch {
                    module: module.clone(),
                    pattern: pat.clone(),
                    source,
                    builtin: self.is_builtin(module),
                    blacklisted: self.is_blacklisted(module),
                });
            }
            if !found.is_empty() {
                // Stable: modules absent from modules.order keep file order, last.
                found.sort_by_key(|m| self.order.get(&m.module).copied().unwrap_or(usize::MAX));
                return Ok(found);
            }
        }
        Err(ModaliasError::NoMatch {
            modalias: modalias.to_owned(),
        })
    }
}

/// Checks that `text` (trimmed) is the kernel's PCI modalias; `file` names
/// where it came from for the error.
pub fn validate_pci_modalias(text: &str, file: &Path) -> Result<String, ModaliasError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ModaliasError::Empty {
            file: file.to_owned(),
        });
    }
    let fields: [(&str, usize); 7] = [
        ("pci:v", 8),
        ("d", 8),
        ("sv", 8),
        ("sd", 8),
        ("bc", 2),
        ("sc", 2),
        ("i", 2),
    ];
    let mut rest = t;
    for (prefix, len) in fields {
        let ok = rest.strip_prefix(prefix).and_then(|r| {
            let hex = r.get(..len)?;
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
                .then(|| &r[len..])
        });
        match ok {
            Some(r) => rest = r,
            None => {
                return Err(ModaliasError::Garbled {
                    file: file.to_owned(),
                    text: t.to_owned(),
                });
            }
        }
    }
    if !rest.is_empty() {
        return Err(ModaliasError::Garbled {
            file: file.to_owned(),
            text: t.to_owned(),
        });
    }
    Ok(t.to_owned())
}

/// The PCI driver names module `module` registers, from
/// `sys/module/<m>/drivers/pci:<driver>`; empty when the module exposes
/// none (not loaded, or a built-in without the links).
pub fn module_drivers(root: &HostRoot, module: &str) -> Vec<String> {
    let dir = root.join(format!("sys/module/{}/drivers", normalize_module(module)));
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("pci:")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The driver names to try for `module`: its `sys/module` links, else the
/// module name and its `-` spelling when such a driver directory exists.
pub fn driver_candidates(root: &HostRoot, module: &str) -> Vec<String> {
    let linked = module_drivers(root, module);
    if !linked.is_empty() {
        return linked;
    }
    let m = normalize_module(module);
    let mut out = Vec::new();
    for name in [m.clone(), m.replace('_', "-")] {
        if !out.contains(&name) && root.join(format!("sys/bus/pci/drivers/{name}")).is_dir() {
            out.push(name);
        }
    }
    out
}

/// fnmatch(3) without flags over the whole text: `*`, `?`, `[...]` with
/// ranges and `!`/`^` negation, `\\` escapes. ASCII input (every modalias
/// and depmod pattern) is matched byte by byte without allocating.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob(pattern.as_bytes(), text.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob(&p, &t)
}

/// The characters [`glob`] treats specially.
trait GlobChar: Copy + PartialEq + PartialOrd + From<u8> {}
impl GlobChar for u8 {}
impl GlobChar for char {}

fn glob<T: GlobChar>(p: &[T], t: &[T]) -> bool {
    let c = T::from;
    // Iterative matcher with one backtrack point for the last `*`: linear
    // enough for modalias patterns, no recursion on untrusted input.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi).copied() {
            Some(x) if x == c(b'*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(x) if x == c(b'?') => Some(pi + 1),
            Some(x) if x == c(b'[') => match_class(p, pi, t[ti]),
            Some(x) if x == c(b'\\') && pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(pi + 2),
            Some(x) => (x == t[ti]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|x| *x == c(b'*'))
}

/// Matches `ch` against the bracket expression at `p[start]`; returns the
/// index after it on a match. An unterminated `[` is a literal `[`, as in
/// fnmatch(3).
fn match_class<T: GlobChar>(p: &[T], start: usize, ch: T) -> Option<usize> {
    let c = T::from;
    let mut i = start + 1;
    let negate = p.get(i).is_some_and(|x| *x == c(b'!') || *x == c(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let Some(&cur) = p.get(i) else {
            return (ch == c(b'[')).then_some(start + 1);
        };
        // A `]` right after the opening (or the negation) is a member.
        if cur == c(b']') && !first {
            return (matched != negate).then_some(i + 1);
        }
        first = false;
        match (p.get(i + 1), p.get(i + 2)) {
            (Some(&dash), Some(&hi)) if dash == c(b'-') && hi != c(b']') => {
                matched |= cur <= ch && ch <= hi;
                i += 3;
            }
            _ => {
                matched |= cur == ch;
                i += 1;
            }
        }
    }
}
