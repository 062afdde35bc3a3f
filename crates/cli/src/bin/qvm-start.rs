//! `qvm-start`: Qubes' tool of that name over qpcid (spec/qvm-tools.md).

fn main() -> std::process::ExitCode {
    qpci_cli::tools::main_for(qpci_cli::tools::Kind::Start)
}
