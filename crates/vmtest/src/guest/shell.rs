//! The timing baseline: the same sysfs writes done by a busybox shell script
//! (`/bin/shell-bind`, from tests/vm/shell-bind) in the same guest.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};

use super::sysfs::driver_of;
use super::{Suite, Victim};

/// Rounds of bind + give-back each timing runs.
pub const ROUNDS: u32 = 5;

/// Runs the shell baseline on the virtio-net victim.
pub fn run(suite: &mut Suite) {
    suite.check("shell.bind", |s| {
        let inv = s.scan();
        let d = Victim::VirtioNet
            .find(&inv)
            .context("virtio-net not found")?;
        let dev = d.address.to_string();
        let start = Instant::now();
        let out = Command::new("/bin/shell-bind")
            .args([&dev, Victim::VirtioNet.module(), &ROUNDS.to_string()])
            .output()
            .context("running /bin/shell-bind")?;
        let per = start.elapsed().as_secs_f64() * 1000.0 / f64::from(ROUNDS);
        ensure!(
            out.status.success(),
            "shell-bind {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let now = driver_of(&dev);
        ensure!(
            now.as_deref() == Some(Victim::VirtioNet.driver()),
            "after the script {dev} is on {now:?}"
        );
        s.timing(
            "shell-script bind+give-back",
            &format!("{per:.1} ms per round ({ROUNDS} rounds, virtio-net {dev})"),
        );
        Ok(format!(
            "{ROUNDS} rounds, {per:.1} ms each, back on virtio-pci"
        ))
    });
}
