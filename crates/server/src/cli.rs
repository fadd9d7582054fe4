//! The command line. Exit codes: 0 success, 1 a runtime failure (database down, bind
//! refused), 2 bad input (a wrong flag, key or value, an unknown user).

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "conclave",
    version,
    about = "Conclave: on-premises enterprise messaging"
)]
pub struct Cli {
    /// Configuration file (default: ./conclave.toml when it exists).
    #[arg(long, global = true, env = "CONCLAVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Data directory: the SQLite database, generated keys, attachments (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and web client.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Account administration from the server's shell (audited as `system:cli`).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Master keys: rotate, finish a rotation, status, remove an old key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The LDAP / Active Directory directory.
    #[command(subcommand)]
    Ldap(LdapCommand),
}

#[derive(Debug, Subcommand)]
pub enum LdapCommand {
    /// Sync accounts from the directory now (audited as `system:cli`); prints the report.
    Sync {
        /// Report what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain; exits 1 naming the first bad sequence number.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new master key, make it active, and rewrap every data key under it.
    Rotate,
    /// Rewrap data keys still under an older master key (finishes an interrupted rotation).
    Rewrap,
    /// Show each master key and how many data keys it wraps.
    Status,
    /// Remove a master key that no data key uses any more.
    Remove { key_id: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file, environment, flags) and print the result.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a local account; prints its one-time password.
    CreateUser {
        username: String,
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        email: Option<String>,
        /// Comma-separated: admin, compliance_officer, auditor (user is implied).
        #[arg(long, default_value = "")]
        roles: String,
    },
    /// Replace an account's roles (comma-separated; user is implied).
    SetRoles { username: String, roles: String },
    /// Suspend an account and end all of its sessions.
    Suspend { username: String },
    /// Lift a suspension.
    Reactivate { username: String },
    /// Give a local account a new one-time password (break-glass recovery).
    ResetPassword { username: String },
    /// List accounts.
    ListUsers {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_flags_exit_2() {
        let err = Cli::try_parse_from(["conclave", "serve", "--bind", "nonsense"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["conclave", "frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
