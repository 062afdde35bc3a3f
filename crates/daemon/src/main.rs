//! qpcid: the Admin API daemon (foreground; see `qpcid --help`).

use anyhow::Context;
use clap::Parser;
use qpcid::flags::Flags;

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    qpcid::logging::init(&flags.log_level)?;
    let config = flags.into_config()?;
    let socket = config.layout.socket.clone();
    qpcid::server::run(config).with_context(|| format!("qpcid ({})", socket.display()))
}
