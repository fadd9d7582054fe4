//! `with-postgres COMMAND ARGS...`: starts a throwaway PostgreSQL cluster on a free
//! loopback port, runs the command with `TESTKIT_PG_URL` pointing at it, then stops
//! the cluster and removes its files, and exits with the command's status. `make test`
//! wraps the whole suite in it so every test process shares one cluster.

use conclave_testkit::PostgresCluster;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: with-postgres COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let cluster = match PostgresCluster::start_with_watchdog(std::process::id()) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("with-postgres: {err}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "with-postgres: throwaway cluster at {}",
        cluster.admin_url()
    );
    let status = Command::new(&program)
        .args(args)
        .env("TESTKIT_PG_URL", cluster.admin_url())
        .status();
    cluster.stop();
    match status {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("with-postgres: cannot run {program}: {err}");
            ExitCode::from(1)
        }
    }
}
