use clap::Parser;

/// mimalloc instead of the system allocator: requests and exports build and drop many
/// small JSON trees, and glibc's malloc/free took 30 % of an export's CPU
/// (docs/performance.md). The benchmarks declare the same allocator (benches/common).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = journey_api::cli::Cli::parse();
    match journey_api::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
