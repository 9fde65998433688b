//! Entry point: everything happens in [`runbook_exporter::cli::main`].

fn main() -> std::process::ExitCode {
    runbook_exporter::cli::main()
}
