//! `qvm-unpause`: Qubes' tool of that name over qpcid.

fn main() -> std::process::ExitCode {
    qpci_cli::tools::main_for(qpci_cli::tools::Kind::Unpause)
}
