//! Man pages and shell completions, generated from the clap definition so
//! they never drift from the parser.

use std::path::Path;

use crate::flags::defs::command;

/// Writes `qvm-pci.1`, one page per subcommand (`qvm-pci-list.1`, ...),
/// `qvm-device.1` (with its subcommand pages) and the page of every other
/// tool (`qvm-ls.1`, `qvm-prefs.1`, ...) into `dir`, creating it.
/// Returns how many pages were written.
pub fn man_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let before = count_pages(dir)?;
    for bin in ["qvm-pci", "qvm-device"] {
        clap_mangen::generate_to(command(bin).bin_name(bin), dir)?;
    }
    for kind in crate::tools::Kind::ALL {
        crate::tools::write_man_page(kind, dir)?;
    }
    Ok(count_pages(dir)?.saturating_sub(before).max(1))
}

fn count_pages(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.path().extension().is_some_and(|e| e == "1") {
            n += 1;
        }
    }
    Ok(n)
}

/// A completion script for `shell`, for the program named `bin`.
pub fn completions(shell: clap_complete::Shell, bin: &str) -> String {
    let tool = if bin.starts_with("qvm-device") {
        "qvm-device"
    } else {
        "qvm-pci"
    };
    let mut cmd = command(tool).bin_name(bin.to_owned());
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, bin.to_owned(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
