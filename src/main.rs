//! Entry point: everything happens in [`runbook_exporter::cli::main`].
//!
//! The binary allocates with jemalloc: it gives back to the kernel the pages
//! that a config load and the first runs free, where glibc's malloc keeps
//! them resident (ARCHITECTURE.md, Decisions). Tests and benchmarks linking the
//! library keep the system allocator.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    runbook_exporter::cli::main()
}
