//! Standalone `sluice-bench`: the `sluice bench` load generator without the gateway.
//! Benchmark scripts pin it with `taskset`; the workers run on `--threads` threads
//! of their own, so a current-thread runtime is enough here.

use clap::Parser;

/// Load generator for OpenAI- and Ollama-compatible endpoints.
#[derive(Parser, Debug)]
#[command(name = "sluice-bench", version)]
struct Cli {
    #[command(flatten)]
    bench: sluice_bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(sluice_bench::run(cli.bench))?;
    Ok(())
}
