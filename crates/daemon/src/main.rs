//! qpcid: the Admin API daemon (arrives with the daemon issue).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("qpcid is not built yet: the daemon arrives with its own issue")
}
