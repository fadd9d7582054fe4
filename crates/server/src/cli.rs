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
    /// Retention policies, their recomputation jobs and the sweeper (compliance officers).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Legal holds (compliance officers).
    #[command(subcommand)]
    Holds(HoldsCommand),
    /// The LDAP / Active Directory directory.
    #[command(subcommand)]
    Ldap(LdapCommand),
    /// Compliance exports: run one, list them, verify a bundle.
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export a window now (audited as the named compliance officer) and wait for it.
    Run {
        /// jsonl, csv, eml or xml.
        #[arg(long)]
        format: String,
        /// Start of the window (RFC 3339, inclusive).
        #[arg(long)]
        from: String,
        /// End of the window (RFC 3339, exclusive; default now).
        #[arg(long)]
        until: Option<String>,
        /// A room or direct conversation id (repeatable).
        #[arg(long = "room", value_name = "ROOM_ID")]
        rooms: Vec<String>,
        /// A custodian's username (repeatable).
        #[arg(long = "custodian", value_name = "USERNAME")]
        custodians: Vec<String>,
        /// Export what this legal hold covers.
        #[arg(long = "hold", value_name = "HOLD_ID")]
        hold: Option<String>,
        /// Include the attachment files themselves.
        #[arg(long)]
        include_files: bool,
        #[arg(long = "as", value_name = "USERNAME")]
        officer: String,
    },
    /// Print export jobs, newest first.
    List,
    /// Check a bundle: the manifest's signature and every file's SHA-256; exits 1 naming
    /// the first problem.
    Verify {
        /// The bundle's directory.
        dir: std::path::PathBuf,
        /// The signing key to trust (base64); default: this server's audit signing key.
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Print every retention policy.
    List,
    /// Report what a policy would destroy now and within 30 days, per room; changes nothing.
    Preview(RetentionPolicyArgs),
    /// Save a policy; prints the preview first and saves only with --yes.
    Set {
        #[command(flatten)]
        policy: RetentionPolicyArgs,
        /// The compliance officer account this change is made as (audited).
        #[arg(long = "as", value_name = "USERNAME")]
        officer: String,
        /// Save after showing the preview.
        #[arg(long)]
        yes: bool,
    },
    /// Remove a scope's policy.
    Delete {
        /// `org`, `group:<security group id>` or `room:<room id>`.
        scope: String,
        #[arg(long = "as", value_name = "USERNAME")]
        officer: String,
    },
    /// Recomputation jobs and their progress.
    Jobs,
    /// Run pending recomputation jobs and one sweep now, and print what it did.
    Sweep,
}

#[derive(Debug, Args)]
pub struct RetentionPolicyArgs {
    /// `org`, `group:<security group id>` or `room:<room id>`.
    pub scope: String,
    /// Keep the compliance copy at least this many days after send.
    #[arg(long)]
    pub min_days: Option<u32>,
    /// Destroy messages this many days after send.
    #[arg(long)]
    pub max_days: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum HoldsCommand {
    /// Print legal holds, newest first.
    List {
        /// Only holds not released yet.
        #[arg(long)]
        active: bool,
    },
    /// Place a legal hold on custodians, rooms or both.
    Place {
        #[arg(long)]
        name: String,
        #[arg(long)]
        reason: String,
        /// A custodian's username (repeatable).
        #[arg(long = "custodian", value_name = "USERNAME")]
        custodians: Vec<String>,
        /// A room or direct conversation id (repeatable).
        #[arg(long = "room", value_name = "ROOM_ID")]
        rooms: Vec<String>,
        /// Hold only messages sent at or after this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Hold only messages sent at or before this RFC 3339 time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[arg(long = "as", value_name = "USERNAME")]
        officer: String,
    },
    /// Release a hold: what it alone kept becomes due for the sweeper.
    Release {
        hold_id: String,
        #[arg(long = "as", value_name = "USERNAME")]
        officer: String,
    },
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
    /// What this node does: all (default), api or worker (see docs/deployment.md).
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<crate::settings::Role>,
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
