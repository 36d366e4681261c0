//! `perf produce` / `perf consume`: Loglab's kafka-producer-perf-test and kafka-consumer-perf-test,
//! over real TCP (see `client::perf` for the output format); `perf omb`: an OpenMessaging
//! Benchmark workload (see `client::omb::run`).

#[cfg(not(madsim))]
mod real {
    use std::process::ExitCode;
    use std::sync::Arc;

    use clap::{Parser, Subcommand};
    use client::omb::run::{self as omb, OmbArgs};
    use client::perf::{self, ConsumeArgs, ProduceArgs};
    use net_model::tcp::TcpNetwork;

    #[derive(Debug, Parser)]
    #[command(name = "perf", version, about = "Loglab perf tools shaped like Kafka's")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        /// Like kafka-producer-perf-test: latency is send-to-acknowledgement.
        Produce(ProduceArgs),
        /// Like kafka-consumer-perf-test (assigns every partition; no group).
        Consume(ConsumeArgs),
        /// An OpenMessaging Benchmark workload + Kafka driver file; writes OMB's result JSON.
        Omb(OmbArgs),
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        net_model::process::keep_freed_heap();
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(client::perf::WORKER_THREADS)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("perf: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let net: Arc<dyn net_model::Network> = Arc::new(TcpNetwork::default());
        let mut out = std::io::stdout();
        let result = rt.block_on(async {
            match &cli.cmd {
                Cmd::Produce(a) => perf::produce(a, net, &mut out).await.map(|s| s.errors == 0),
                Cmd::Consume(a) => perf::consume(a, net, &mut out).await.map(|_| true),
                Cmd::Omb(a) => omb::run(a, net, &mut out)
                    .await
                    .map(|r| r.loglab.publish_errors == 0)
                    .map_err(|e| perf::PerfError::Usage(e.to_string())),
            }
        });
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("perf: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(madsim)]
fn main() {
    eprintln!("perf runs on real IO only; build without --cfg madsim");
}
