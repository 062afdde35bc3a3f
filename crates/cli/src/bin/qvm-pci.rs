//! `qvm-pci`: list PCI devices and manage their assignment to qubes.

fn main() -> std::process::ExitCode {
    qpci_cli::main_for(qpci_cli::Tool::Pci)
}
