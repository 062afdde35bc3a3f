//! `qvm-device CLASS ...`: the same tool with the device class as the first
//! argument (only `pci` is supported).

fn main() -> std::process::ExitCode {
    qpci_cli::main_for(qpci_cli::Tool::Device)
}
