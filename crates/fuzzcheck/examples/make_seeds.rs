//! Writes the hand-made seed corpus: `cargo run -p qpci-fuzzcheck --example
//! make_seeds -- fuzz/corpus` (run from the repository root).
#![allow(missing_docs)]

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let n = qpci_fuzzcheck::seeds::write_corpus(std::path::Path::new(&dir))?;
    println!("{n} seeds written under {dir}");
    Ok(())
}
