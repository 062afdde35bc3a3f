//! The state file on disk: reading with limits, durable atomic saves, and the
//! `qubes.xml.before-qpci` copy.

use std::fs::{self, File};
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cache::SaveCache;
use crate::changed::ChangedSet;
use crate::error::{Location, StoreError, io_err};
use crate::lock::StateLock;
use crate::model::QubesXml;
use crate::parse::{MARKER_PREFIX, MAX_FILE_BYTES, line_col};

/// Name of the state file in its folder.
pub const STATE_FILE: &str = "qubes.xml";
/// Name of the copy kept of the last version another program wrote.
pub const BEFORE_QPCI_FILE: &str = "qubes.xml.before-qpci";
/// Prefix of the temporary files of a save; leftovers from a crash are removed at open.
pub const TEMP_PREFIX: &str = ".qubes.xml.qpci-tmp-";

/// Reads and parses a state file without locking (for read-only tools).
pub fn read_state(path: &Path) -> Result<QubesXml, StoreError> {
    QubesXml::parse(&read_text(path)?, path)
}

/// Reads a state file's text, with the size limit.
fn read_text(path: &Path) -> Result<String, StoreError> {
    String::from_utf8(read_limited(path)?).map_err(|e| {
        let bytes = e.as_bytes();
        let good = bytes
            .get(..e.utf8_error().valid_up_to())
            .unwrap_or_default();
        let (line, column) = line_col(&String::from_utf8_lossy(good), good.len());
        StoreError::NotUtf8 {
            at: Location::new(path, line, column),
        }
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let too_large = |size| StoreError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_FILE_BYTES,
    };
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow between stat and read: the limit holds whatever happens.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The state folder, held for writing: owns the lock for as long as it lives.
#[derive(Debug)]
pub struct StateFile {
    dir: PathBuf,
    path: PathBuf,
    lock: StateLock,
    /// The last save's text and records: the next save copies the domains
    /// that did not change instead of serialising and checking them again.
    /// Before the first save, the loaded file's when our writer wrote it so.
    cache: SaveCache,
    /// The file our last save put in place: while `qubes.xml` is still that
    /// file, it carries the marker and need not be read to know it.
    written: Option<FileId>,
}

/// What tells one file from another without reading it: the inode (a
/// replace by rename, Qubes' way, gives a new one), and the size and the
/// change times a rewrite in place changes. Only a rewrite in place to the
/// same size within one tick of the kernel's file clock could look the same;
/// the state lock keeps other writers out anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(m: &fs::Metadata) -> Self {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl StateFile {
    /// Locks `dir`, removes temporary files a crashed save left, and loads `qubes.xml` if there is one.
    ///
    /// When the file is exactly what a save of the returned records writes
    /// (our writer's, untouched since), it counts as this `StateFile`'s last
    /// save: [`save_changed`](Self::save_changed) may then name only the
    /// domains changed since this load, and the first save costs what later
    /// ones do. Checking that costs one serialisation of the records. The
    /// `qubes.xml.before-qpci` copy does not depend on it (see [`save`](Self::save)).
    pub fn open(dir: &Path) -> Result<(StateFile, Option<QubesXml>), StoreError> {
        let lock = StateLock::acquire(dir)?;
        let mut sf = StateFile {
            dir: dir.to_path_buf(),
            path: dir.join(STATE_FILE),
            lock,
            cache: SaveCache::default(),
            written: None,
        };
        sf.remove_stale_temps()?;
        let state = match sf.load_text()? {
            None => None,
            Some(text) => {
                let state = QubesXml::parse(&text, &sf.path)?;
                sf.cache.seed(&text, &state);
                Some(state)
            }
        };
        Ok((sf, state))
    }

    /// Reads `qubes.xml` again; `None` when there is none yet.
    pub fn load(&self) -> Result<Option<QubesXml>, StoreError> {
        match self.load_text()? {
            None => Ok(None),
            Some(text) => QubesXml::parse(&text, &self.path).map(Some),
        }
    }

    /// The text of `qubes.xml`; `None` when there is none yet.
    fn load_text(&self) -> Result<Option<String>, StoreError> {
        match fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &self.path)(e)),
            Ok(_) => read_text(&self.path).map(Some),
        }
    }

    /// The qids of the domains of `state` not shown equal to their record
    /// in the last successful save (before the first save, in the file
    /// [`open`](Self::open) loaded, when it counts as saved): those that
    /// differ, those it has no record of, and those it kept no encoding of
    /// (a domain the last save wrote anew). A caller holding records it has
    /// not tracked since then (the daemon's saver, at start, has records made
    /// from its registry) declares these changed to
    /// [`save_changed`](Self::save_changed). Costs one comparison per domain.
    pub fn changed_since_saved(&self, state: &QubesXml) -> ChangedSet {
        self.cache.changed(state)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock this state file holds.
    pub fn lock(&self) -> &StateLock {
        &self.lock
    }

    fn remove_stale_temps(&self) -> Result<(), StoreError> {
        remove_stale_temps(&self.dir)
    }

    /// Checks `state` and writes it durably: when this returns `Ok`, it is on disk.
    ///
    /// Steps: check the records (a save never writes a file the store would
    /// refuse to load); if the file on disk does not carry qpci's marker, copy
    /// it to `qubes.xml.before-qpci` first (itself atomically); write a temp
    /// file in the same folder, fsync it, rename it over `qubes.xml`, fsync the
    /// folder.
    ///
    /// Failures handled:
    /// - ENOSPC, EIO or any error while writing or fsyncing the temp file: the
    ///   temp file is removed, `qubes.xml` is untouched, the error is returned.
    /// - A crash (or SIGKILL, or power loss) at any step: before the rename the
    ///   old file is intact and a temp file may remain (removed by the next
    ///   `open`, and never read by a load); after the rename the new file is
    ///   complete, because its data was fsynced before the rename. The folder
    ///   fsync makes the rename itself survive power loss before we answer.
    /// - Two writers: the `StateLock` held by every `StateFile` makes a second
    ///   qpci writer fail at `open`, and also excludes Qubes' qubesd (see
    ///   [`StateLock`]). Each save uses a fresh uniquely named temp file, so
    ///   even an unlocked writer could not interleave bytes with ours.
    /// - Mode and owner of the existing file are carried over (Qubes keeps
    ///   `qubes.xml` group-readable for its tools).
    ///
    /// A save costs in proportion to what changed since the last one: the
    /// domains equal to the last save's are copied as the bytes written then
    /// (see `cache.rs`); the output is the same as [`QubesXml::to_xml`]'s.
    /// Finding them compares every domain with the last save; a caller that
    /// knows what changed uses [`save_changed`](Self::save_changed).
    pub fn save(&mut self, state: &QubesXml) -> Result<(), StoreError> {
        self.save_with(state, None)
    }

    /// [`save`](Self::save), taking the caller's word on what changed: every
    /// domain whose qid is not in `changed` and that the last successful save
    /// of this `StateFile` had (same qid) is taken as equal to it, so it is
    /// copied as the bytes written then and its own checks are skipped,
    /// without comparing it. The output and the durability are `save`'s.
    ///
    /// `changed` must be relative to the last save that returned `Ok` (before
    /// the first, to the state [`open`](Self::open) returned); after a failed
    /// save, the caller that cannot tell uses [`save`](Self::save).
    /// Debug builds check the claim against a copy of the saved records and
    /// return [`StoreError::UndeclaredChange`] (nothing written) when a
    /// domain declared unchanged is not equal to its last saved record.
    pub fn save_changed(
        &mut self,
        state: &QubesXml,
        changed: &ChangedSet,
    ) -> Result<(), StoreError> {
        self.save_with(state, Some(changed))
    }

    fn save_with(&mut self, state: &QubesXml, hint: Option<&ChangedSet>) -> Result<(), StoreError> {
        let mut plan = self.cache.plan(state, hint);
        #[cfg(debug_assertions)]
        if hint.is_some()
            && let Some(d) = self.cache.undeclared_change(&plan, state)
        {
            return Err(StoreError::UndeclaredChange {
                path: self.path.clone(),
                qid: d.qid,
                name: crate::error::clip(&d.name),
            });
        }
        let known = self.cache.known(&plan, state);
        crate::validate::check_known(state, &self.path, Some(&known))?;
        drop(known);
        let written = self.cache.write(&mut plan, state);
        let slices = self.cache.slices(&written);
        let result = replace(&self.dir, &self.path, &mut self.written, &slices);
        drop(slices);
        match result {
            Ok(()) => {
                self.cache.commit(plan, state, written);
                Ok(())
            }
            Err(e) => {
                self.cache.abandon(written);
                Err(e)
            }
        }
    }
}

/// Replaces the state file `path` in `dir` with `text` (the slices, in
/// order); `written` is the file our last save put there, updated.
fn replace(
    dir: &Path,
    path: &Path,
    written: &mut Option<FileId>,
    text: &[IoSlice<'_>],
) -> Result<(), StoreError> {
    let meta = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    let ours = written.is_some_and(|w| meta.as_ref().map(FileId::of) == Some(w));
    // Forgotten until this save is known to be in place: after a failure
    // the next save reads the file's head again.
    *written = None;
    if meta.is_some() && !ours && !written_by_qpci(path)? {
        let copy = dir.join(BEFORE_QPCI_FILE);
        let old = fs::read(path).map_err(io_err("read", path))?;
        write_atomic(dir, &copy, &old, meta.as_ref())?;
    }
    *written = Some(write_atomic_id(dir, path, text, meta.as_ref())?);
    Ok(())
}

/// Whether the file carries qpci's marker before its root element.
fn written_by_qpci(path: &Path) -> Result<bool, StoreError> {
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(io_err("read", path))?;
    let head = String::from_utf8_lossy(&head);
    let root = head.find("<qubes").unwrap_or(head.len());
    let marker = format!("<!--{MARKER_PREFIX}");
    Ok(head.find(&marker).is_some_and(|i| i < root))
}

/// Removes the temporary files [`write_atomic`] left in `dir` when a crash
/// cut a write off. Only for a caller holding the state lock: then no live
/// write owns one, and nothing ever reads them.
pub fn remove_stale_temps(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err("remove stale temporary file", &p))?;
        }
    }
    Ok(())
}

/// Durably replaces `target` with `bytes`: temp file in `dir`, write, fsync, rename, fsync `dir`.
///
/// `like` gives the mode and owner to keep (those of the file being replaced).
pub fn write_atomic(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
    like: Option<&fs::Metadata>,
) -> Result<(), StoreError> {
    write_atomic_id(dir, target, &[IoSlice::new(bytes)], like).map(drop)
}

/// Writes every byte of `bufs`, in order, with as few `writev` calls as the
/// kernel allows.
fn write_all_slices(file: &mut File, bufs: &[IoSlice<'_>]) -> io::Result<()> {
    // The kernel takes at most IOV_MAX (1024 on Linux) slices per call.
    const IOV_MAX: usize = 1024;
    let mut owned = bufs.to_vec();
    let mut rest = owned.as_mut_slice();
    while !rest.is_empty() {
        let end = rest.len().min(IOV_MAX);
        match file.write_vectored(rest.get(..end).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`write_atomic`], returning the identity of the file put in place.
fn write_atomic_id(
    dir: &Path,
    target: &Path,
    bytes: &[IoSlice<'_>],
    like: Option<&fs::Metadata>,
) -> Result<FileId, StoreError> {
    let mode = like.map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io_err("create temporary file in", dir))?;
    let tmp_path = tmp.path().to_path_buf();
    // Any early return drops `tmp`, which removes the temp file: the target is untouched.
    write_all_slices(tmp.as_file_mut(), bytes).map_err(io_err("write", &tmp_path))?;
    if let Some(m) = like {
        let mine = tmp
            .as_file()
            .metadata()
            .map_err(io_err("stat", &tmp_path))?;
        if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
            std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()))
                .map_err(io_err("chown", &tmp_path))?;
        }
        // The umask may have narrowed the mode at creation; set it exactly.
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &tmp_path))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(io_err("fsync", &tmp_path))?;
    let file = tmp
        .persist(target)
        .map_err(|e| io_err("rename temporary file over", target)(e.error))?;
    // After the rename, which may change the inode's ctime.
    let id = file
        .metadata()
        .map(|m| FileId::of(&m))
        .map_err(io_err("stat", target))?;
    sync_dir(dir)?;
    Ok(id)
}

/// fsyncs a folder so a rename in it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync folder", dir))
}
