//! The `sluice` binary: parse the command line, then hand each subcommand to the crate
//! that does the work (`sluice-server`, `sluice-agent`, `sluice-chat`, `sluice-bench`).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc rather than glibc's malloc for Rust's allocations. Under a steady load the
/// gateway's live heap stays flat, but glibc's per-thread arenas kept the memory of
/// freed buffers: at 1,000 streams its resident memory grew 13% in the 16 minutes after
/// warm-up (heaptrack: heap flat at 41 MiB; after the load 3 MiB live, 70 MiB resident),
/// with mimalloc 2.5% in 15 minutes; see docs/benchmarks.md.
///
/// Built with mimalloc's `no_thp`: otherwise it asks the kernel for transparent huge
/// pages (`MADV_HUGEPAGE`) for its arenas, so memory became resident 2 MiB at a time.
/// Each KV state the engine keeps in host memory (~9.1 MiB for a 400-token chat) held
/// 10 MiB, 10% over `kv_cache_bytes`, and the gateway under load held ~20 MiB more.
///
/// The `mimalloc` feature (on by default) puts it in; without it (`cargo build
/// --no-default-features -p sluice`) allocations go to glibc's malloc, where heaptrack
/// and valgrind can follow them.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(commands::serve(args)),
        Command::Bench(args) => runtime.block_on(async { sluice_bench::run(args).await.map(|_| ()) }),
        Command::Chat(args) => runtime.block_on(sluice_chat::run(args)),
        Command::Key(args) => runtime.block_on(commands::key(args)),
        Command::User(args) => runtime.block_on(commands::user(args)),
        Command::Agent(args) => runtime.block_on(commands::agent(args)),
        Command::AgentToken(args) => runtime.block_on(commands::agent_token(args)),
        Command::Tls(args) => commands::tls(args),
    };
    // A blocking task still running (a model load, say) must not hold the exit: the
    // grace period is over by now, and the process ends within a second of it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(300));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`sluice key list | head`): nothing to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// True when `e` is a write to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
