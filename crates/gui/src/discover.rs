//! How the dialog finds qpcid: the shared rules of `qpci-api`
//! (DESIGN.md "How clients find it"), with one addition for a window: a
//! socket that exists but refuses us (`EACCES`) is returned as found, so the
//! dialog can say "permission denied" instead of starting a second daemon.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use qpci_api::discover::Env;
pub use qpci_api::discover::{detach_helper, is_detach_helper};

/// Finds (or starts) qpcid; `Err` says what was tried.
pub fn discover() -> Result<PathBuf, String> {
    let env = Env::from_process();
    let refuses_us = |path: &PathBuf| {
        UnixStream::connect(path).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    };
    if let Some(path) = &env.qpci_socket {
        return match UnixStream::connect(path) {
            Ok(_) => Ok(path.clone()),
            _ if refuses_us(path) => Ok(path.clone()),
            Err(e) => Err(format!(
                "QPCI_SOCKET={}: {e} (qpcid is never started automatically when QPCI_SOCKET is set)",
                path.display()
            )),
        };
    }
    if refuses_us(&env.system_socket) {
        return Ok(env.system_socket.clone());
    }
    qpci_api::discover::discover(&env).map_err(|e| e.to_string())
}
