//! The daemon's life: startup in DESIGN.md's order, the socket server, and
//! a graceful stop.
//!
//! Startup: create the folders → take the state lock ([`StateFile::open`]:
//! a second daemon on the same state stops here, naming the holder's pid,
//! before it touches any socket) → load the state → bind the socket (a
//! leftover socket file is removed only now, under the lock, and only when
//! nothing answers on it) → write the pid file → `READY=1` to systemd →
//! serve.
//!
//! Serving: one tokio task per connection (at most [`MAX_CONNECTIONS`] at
//! once). It reads the request to EOF with the 64 KiB cap and
//! a timeout (over the cap, past the timeout, or unframable: the connection
//! is closed without a reply and the reason logged), checks the peer
//! ([`crate::peer`]), and passes the request to the state owner
//! ([`crate::state`]), which answers when the change is durable.
//! `admin.Events` becomes a stream ([`crate::events`]).
//!
//! Stop (SIGTERM, SIGINT, or `--idle-exit`): stop accepting, let requests
//! already read finish (a connection still waiting for its request is
//! closed), remove the socket and pid file while the lock is still held,
//! then let the owner finish queued saves and release the lock.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use qpci_api::{MAX_REQUEST, RawRequest, Reply};
use qpci_core::registry::Registry;
use qpci_host::{HostFlavour, HostRoot, PciIds};
use qpci_store::{StateFile, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::dispatch::HostSource;
use crate::dispatch::Table;
use crate::dispatch::table::EVENTS;
use crate::events::{EventHub, stopped};
use crate::host_source::{ScanningHost, detect_flavour};
use crate::host_writer::{HostWriter, HostWriterError};
use crate::paths::{Layout, PathError};
use crate::peer::{Group, GroupError, Peer, Policy, QUBES_GROUP};
use crate::state::{Job, Msg, Parts};

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a stop waits for requests already read.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the daemon needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket, pid file and state folder.
    pub layout: Layout,
    /// `--backend`.
    pub backend: crate::flags::Backend,
    /// `--libvirt-uri` (default by flavour).
    pub libvirt_uri: Option<String>,
    /// The host root (`--sysfs-root`).
    pub host_root: HostRoot,
    /// `--pci-ids`; `None` for the system's pci.ids.
    pub pci_ids: Option<PathBuf>,
    /// `--flavour`; `None` to detect it from the host root.
    pub flavour: Option<HostFlavour>,
    /// `--allow-uid`.
    pub allow_uids: Vec<u32>,
    /// `--idle-exit`.
    pub idle_exit: Option<Duration>,
    /// How long a client may take to send its request (and read its reply).
    pub request_timeout: Duration,
    /// Test hook: sleep before each save.
    pub save_delay: Duration,
    /// Test hook: register the `qpci.test.*` methods.
    pub test_methods: bool,
    /// `--emulate-kernel`: the engine writes into the fixture host root
    /// through the fake kernel.
    pub emulate_kernel: bool,
    /// `--modprobe CMD`, split into words.
    pub modprobe: Option<Vec<std::ffi::OsString>>,
    /// `--xl CMD`, split into words (`None`: the system's `xl`).
    pub xl: Option<Vec<std::ffi::OsString>>,
}

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A folder could not be set up.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The state could not be locked or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state loaded but has no valid shape.
    #[error("{path}: {message}")]
    Registry {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// pci.ids could not be read.
    #[error(transparent)]
    Names(#[from] qpci_host::names::NamesError),
    /// The hypervisor backend could not be opened.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The host writer could not be set up.
    #[error(transparent)]
    Writer(#[from] HostWriterError),
    /// The `qubes` group is missing (system mode).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Something answers on the socket path already.
    #[error(
        "{0} is in use by another server (not on this state); stop it or pass another --socket"
    )]
    SocketInUse(PathBuf),
    /// The socket path holds something that is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// An OS call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ServerError + use<> {
    let path = path.to_path_buf();
    move |source| ServerError::Io { op, path, source }
}

/// Runs the daemon until it is told to stop.
pub fn run(config: Config) -> Result<(), ServerError> {
    let uid = rustix::process::geteuid().as_raw();
    let layout = &config.layout;
    layout.create_dirs(uid)?;
    let (file, xml) = StateFile::open(&layout.state_dir)?;
    tracing::info!(lock = %file.lock().path().display(), "state lock taken");
    let ids = match &config.pci_ids {
        Some(p) => PciIds::load(p)?,
        None => PciIds::load_default()?,
    };
    let mut host = ScanningHost::new(config.host_root.clone(), ids).with_xl(config.xl.clone());
    let flavour = config
        .flavour
        .unwrap_or_else(|| detect_flavour(host.root()));
    let registry = match xml {
        None => {
            tracing::info!(state = %file.path().display(), "no state yet; starting with dom0 only");
            Registry::new_default()
        }
        Some(xml) => {
            let inv = host.inventory(true);
            let (registry, warnings) =
                Registry::from_records(xml, &inv).map_err(|e| ServerError::Registry {
                    path: file.path().to_path_buf(),
                    message: e.message,
                })?;
            for w in warnings {
                tracing::warn!("{}: {w}", file.path().display());
            }
            registry
        }
    };
    let hypervisor = crate::backend::open(
        config.backend,
        config.libvirt_uri.as_deref(),
        &layout.state_dir,
        flavour,
        &mut host,
    )?;
    let writer = if config.emulate_kernel {
        tracing::info!(root = %config.host_root.dir().display(), "host writes go to the fixture tree through the emulated kernel");
        HostWriter::emulated(config.host_root.clone(), config.modprobe.clone())?
    } else if config.backend == crate::flags::Backend::Libvirt {
        // A real hypervisor needs its devices on the stub before the domain
        // is defined (M8): the one mode that writes the host for real.
        tracing::warn!(root = %config.host_root.dir().display(), "libvirt backend: host writes are performed (stub binding, give-back)");
        HostWriter::production(config.host_root.clone(), config.modprobe.clone())
    } else {
        HostWriter::compute_only(config.host_root.clone(), config.modprobe.clone())
    };
    let group = if layout.system {
        Some(Group::lookup(Path::new("/"), QUBES_GROUP)?)
    } else {
        None
    };
    let policy = Policy::new(uid, &config.allow_uids, group.clone());
    let listener = bind(layout, group.as_ref())?;
    write_pid(&layout.pid_file)?;
    let mut table = Table::standard();
    if config.test_methods {
        crate::dispatch::table::add_test_methods(&mut table);
    }
    let hub = EventHub::new();
    let owner = crate::state::spawn(Parts {
        registry,
        hypervisor,
        host: Box::new(host),
        flavour,
        writer,
        table,
        file,
        save_delay: config.save_delay,
        hub: hub.clone(),
    })
    .map_err(io_err("start threads for", &layout.state_dir))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("qpcid-io")
        .build()
        .map_err(io_err("start the runtime for", &layout.socket))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        stop: stop_tx,
        owner: owner.sender(),
        policy,
        timeout: config.request_timeout,
        active: AtomicUsize::new(0),
        last_active: std::sync::Mutex::new(Instant::now()),
        limit: Semaphore::new(MAX_CONNECTIONS),
    });
    tracing::info!(
        socket = %layout.socket.display(),
        state = %layout.state_dir.display(),
        ?flavour,
        system = layout.system,
        "qpcid ready"
    );
    let served = runtime.block_on(serve(
        listener,
        Arc::clone(&shared),
        stop_rx,
        config.idle_exit,
    ));
    notify("STOPPING=1");
    // Remove the socket while the lock is still held, so a daemon starting
    // now never loses its fresh socket to our cleanup.
    remove_if_ours(&layout.socket, &layout.pid_file);
    drop(shared);
    owner.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("qpcid stopped");
    served
}

/// Binds the socket: removes a stale one (nothing answering), refuses a
/// live one or a non-socket, and sets the mode (0600; 0660 group `qubes`
/// in system mode).
fn bind(
    layout: &Layout,
    group: Option<&Group>,
) -> Result<std::os::unix::net::UnixListener, ServerError> {
    let path = &layout.socket;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspect", path)(e)),
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::SocketInUse(path.clone()));
            }
            tracing::info!(socket = %path.display(), "removing a stale socket");
            fs::remove_file(path).map_err(io_err("remove stale socket", path))?;
        }
        Ok(_) => return Err(ServerError::NotASocket(path.clone())),
    }
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    // The umask makes the socket private from the moment it exists.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o777 & !mode));
    let bound = std::os::unix::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(io_err("bind", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))?;
    if let Some(g) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(g.gid)))
            .map_err(|e| io_err("chgrp", path)(e.into()))?;
    }
    listener
        .set_nonblocking(true)
        .map_err(io_err("set non-blocking", path))?;
    Ok(listener)
}

fn write_pid(path: &Path) -> Result<(), ServerError> {
    fs::write(path, format!("{}\n", std::process::id())).map_err(io_err("write pid file", path))
}

/// Removes the socket and, if it still names us, the pid file.
fn remove_if_ours(socket: &Path, pid_file: &Path) {
    if let Err(e) = fs::remove_file(socket) {
        tracing::warn!(socket = %socket.display(), "removing the socket: {e}");
    }
    let ours =
        fs::read_to_string(pid_file).is_ok_and(|s| s.trim() == std::process::id().to_string());
    if ours {
        let _ = fs::remove_file(pid_file);
    }
}

/// Tells systemd about our state (`NOTIFY_SOCKET`; nothing when unset).
pub fn notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    let message = format!("{state}\nMAINPID={}\n", std::process::id());
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(message.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        tracing::warn!(socket = target, "sd_notify {state}: {e}");
    }
}

/// State shared by the connection tasks.
struct Shared {
    /// Set to stop the server (signal, idle exit, a dead state owner).
    stop: watch::Sender<bool>,
    owner: mpsc::UnboundedSender<Msg>,
    policy: Policy,
    timeout: Duration,
    active: AtomicUsize,
    last_active: std::sync::Mutex<Instant>,
    limit: Semaphore,
}

/// Counts a connection as active for as long as it lives.
struct Active(Arc<Shared>);

impl Active {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last_active.lock() {
            *last = Instant::now();
        }
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    shared: Arc<Shared>,
    stop_rx: watch::Receiver<bool>,
    idle_exit: Option<Duration>,
) -> Result<(), ServerError> {
    let listener = UnixListener::from_std(listener).map_err(|source| ServerError::Io {
        op: "listen on",
        path: PathBuf::from("socket"),
        source,
    })?;
    spawn_signal_watch(Arc::clone(&shared))?;
    if let Some(idle) = idle_exit {
        spawn_idle_watch(Arc::clone(&shared), idle);
    }
    notify("READY=1");
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop = stop_rx.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let active = Active::new(&shared);
                    let stop = stop_rx.clone();
                    tasks.spawn(async move { connection(stream, active, stop).await });
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    tracing::info!(in_flight = tasks.len(), "stopping: no new connections");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "stopping: connections still busy; closing them"
        );
        tasks.abort_all();
    }
    Ok(())
}

/// Installs the SIGTERM/SIGINT handlers now (before READY=1, so an early
/// signal is never fatal) and stops the server when one arrives.
fn spawn_signal_watch(shared: Arc<Shared>) -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind| {
        signal(kind).map_err(|source| ServerError::Io {
            op: "install a handler for",
            path: PathBuf::from("SIGTERM/SIGINT"),
            source,
        })
    };
    let mut term = install(SignalKind::terminate())?;
    let mut int = install(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name}: stopping");
        shared.stop.send_replace(true);
    });
    Ok(())
}

fn spawn_idle_watch(shared: Arc<Shared>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(tick).await;
            let idle_for = shared
                .last_active
                .lock()
                .map(|t| t.elapsed())
                .unwrap_or_default();
            if shared.active.load(Ordering::SeqCst) == 0 && idle_for >= idle {
                tracing::info!(
                    secs = idle.as_secs_f64(),
                    "no connection for the idle time: stopping"
                );
                shared.stop.send_replace(true);
                return;
            }
        }
    });
}

/// Why a request was not read.
#[derive(Debug)]
enum ReadEnd {
    TooLong,
    Timeout,
    Stopping,
    Io(io::Error),
}

async fn read_request(
    stream: &mut UnixStream,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<Vec<u8>, ReadEnd> {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(timeout, async {
        let mut limited = (&mut *stream).take(MAX_REQUEST as u64 + 1);
        limited.read_to_end(&mut buf).await
    });
    tokio::select! {
        r = read => match r {
            Err(_) => Err(ReadEnd::Timeout),
            Ok(Err(e)) => Err(ReadEnd::Io(e)),
            Ok(Ok(_)) if buf.len() > MAX_REQUEST => Err(ReadEnd::TooLong),
            Ok(Ok(_)) => Ok(buf),
        },
        _ = stopped(stop) => Err(ReadEnd::Stopping),
    }
}

async fn connection(mut stream: UnixStream, active: Active, mut stop: watch::Receiver<bool>) {
    let shared = Arc::clone(&active.0);
    let Ok(_permit) = shared.limit.try_acquire() else {
        tracing::warn!("too many connections ({MAX_CONNECTIONS}); closing a new one");
        return;
    };
    let peer = match Peer::of(&stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("no peer credentials: {e}; closing");
            return;
        }
    };
    let bytes = match read_request(&mut stream, shared.timeout, &mut stop).await {
        Ok(b) => b,
        Err(end) => {
            match end {
                ReadEnd::TooLong => tracing::warn!(
                    uid = peer.uid,
                    pid = peer.pid,
                    "request too long (over {MAX_REQUEST} bytes): closing without reply"
                ),
                ReadEnd::Timeout => tracing::warn!(
                    uid = peer.uid,
                    pid = peer.pid,
                    "no complete request within {:?}: closing",
                    shared.timeout
                ),
                ReadEnd::Stopping => {
                    tracing::debug!("stopping: closing a connection still sending")
                }
                ReadEnd::Io(e) => tracing::debug!(uid = peer.uid, "reading the request: {e}"),
            }
            return;
        }
    };
    if !shared.policy.allows(&peer) {
        tracing::warn!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid,
            "peer refused"
        );
        let reply = Reply::exception("PermissionDenied", shared.policy.refusal(&peer));
        write_reply(&mut stream, &reply, shared.timeout).await;
        return;
    }
    let request = match RawRequest::decode(&bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(uid = peer.uid, pid = peer.pid, "{e}: closing without reply");
            return;
        }
    };
    if request.method == EVENTS.name {
        let (tx, rx) = oneshot::channel();
        if shared
            .owner
            .send(Msg::Subscribe { request, reply: tx })
            .is_err()
        {
            return;
        }
        match rx.await {
            Ok(Ok(sub)) => {
                drop(_permit);
                sub.run(&mut stream, stop).await;
            }
            Ok(Err(e)) => {
                let reply = Reply::exception(&e.class, e.message);
                write_reply(&mut stream, &reply, shared.timeout).await;
            }
            Err(_) => {}
        }
        return;
    }
    let (tx, rx) = oneshot::channel();
    let job = Job {
        request,
        peer,
        reply: tx,
    };
    if shared.owner.send(Msg::Call(job)).is_err() {
        owner_gone(&shared);
        return;
    }
    // The owner drops the sender only when it is gone: then close without a reply.
    if let Ok(reply) = rx.await {
        write_reply(&mut stream, &reply, shared.timeout).await;
    }
}

/// The state owner thread died (a bug): nothing can be served, so stop
/// (systemd restarts the daemon; the CLI auto-starts a new one).
fn owner_gone(shared: &Shared) {
    tracing::error!("the state owner is gone: stopping");
    shared.stop.send_replace(true);
}

async fn write_reply(stream: &mut UnixStream, reply: &Reply, timeout: Duration) {
    let bytes = reply.encode();
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("writing the reply: {e}"),
        Err(_) => tracing::warn!("the client did not read its reply within {timeout:?}: closing"),
    }
}
