//! qubes-vm-settings: the qube settings dialog (arrives with the GUI issue).

fn main() {
    eprintln!("qubes-vm-settings is not built yet: the GUI arrives with its own issue");
    std::process::exit(1);
}
