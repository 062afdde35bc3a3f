//! qpcid: the Admin API daemon.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("qpcid: the server is being built")
}
