//! The `conclave` binary: parse the command line, load the configuration, dispatch.

use clap::Parser;
use conclave_server::cli::{AuditCommand, Cli, Command, ConfigCommand, KeysCommand, LdapCommand};
use conclave_server::settings::{Overrides, Settings};
use conclave_server::{admin, compliance, keys, serve, telemetry};
use std::process::ExitCode;

/// mimalloc rather than the system allocator: a message's way through the server (rows
/// decoded, bodies decrypted, events serialized) is dozens of small allocations, made on
/// many threads at once, where glibc's malloc spends its time on locks and free lists
/// (an export was 7 % faster on either backend with mimalloc; docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        bind: match &cli.command {
            Command::Serve(args) => args.bind,
            _ => None,
        },
        role: match &cli.command {
            Command::Serve(args) => args.role,
            _ => None,
        },
        data_dir: cli.data_dir.clone(),
    };
    let settings = match Settings::load(cli.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("conclave: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            // The certificate files are checked as `serve` would load them.
            if let Some((cert, key)) = settings.tls.files()
                && let Err(err) = conclave_server::tls::load_certified_key(cert, key)
            {
                eprintln!("conclave: configuration error: {err}");
                return ExitCode::from(2);
            }
            println!("configuration is valid");
            println!("  bind:      {}", settings.bind);
            println!("  data_dir:  {}", settings.data_dir.display());
            println!("  role:      {}", settings.role.name());
            match settings.tls.files() {
                Some((cert, _)) => println!("  tls:       https ({})", cert.display()),
                None => println!("  tls:       off (plain HTTP)"),
            }
            match &settings.telemetry.otlp_endpoint {
                Some(endpoint) => println!("  telemetry: OTLP/HTTP to {endpoint}"),
                None => println!("  telemetry: off (logs and /metrics only)"),
            }
            match conclave_store::Backend::from_url(&settings.database_url()) {
                Ok(backend) => println!("  database:  {}", backend.display()),
                Err(err) => println!("  database:  {err}"),
            }
            for provider in &settings.identity.oidc {
                println!("  oidc:      {} ({})", provider.id, provider.issuer);
            }
            if let Some(ldap) = &settings.identity.ldap {
                println!("  ldap:      {} (base {})", ldap.url, ldap.user_base_dn);
            }
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            telemetry::init(&settings.log);
            report(admin::migrate(&settings))
        }
        Command::Ldap(LdapCommand::Sync { dry_run, json }) => {
            telemetry::init(&settings.log);
            report(admin::ldap_sync(&settings, dry_run, json))
        }
        Command::Admin(command) => {
            telemetry::init(&settings.log);
            report(admin::run(&settings, command))
        }
        Command::Retention(command) => {
            telemetry::init(&settings.log);
            report(compliance::retention(&settings, command))
        }
        Command::Holds(command) => {
            telemetry::init(&settings.log);
            report(compliance::holds(&settings, command))
        }
        Command::Export(command) => {
            telemetry::init(&settings.log);
            report(compliance::export(&settings, command))
        }
        Command::Audit(AuditCommand::Verify) => {
            telemetry::init(&settings.log);
            let key = match keys::load_audit_key(&settings, false) {
                Ok(key) => key,
                Err(err) => {
                    eprintln!("conclave: {err}");
                    return ExitCode::from(1);
                }
            };
            let verified = conclave_server::app::open_db(&settings)
                .and_then(|db| conclave_audit::verify(&mut *db.conn()?, &key));
            match verified {
                Ok(result) if result.intact => {
                    println!(
                        "audit log intact: {} event(s) and {} signed checkpoint(s) verified",
                        result.events, result.checkpoints
                    );
                    ExitCode::SUCCESS
                }
                Ok(result) => {
                    println!(
                        "audit log BROKEN at sequence number {}: {}",
                        result.first_bad_seq.unwrap_or_default(),
                        result.reason.unwrap_or_default()
                    );
                    ExitCode::from(1)
                }
                Err(err) => {
                    eprintln!("conclave: {err}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keys(command) => {
            telemetry::init(&settings.log);
            let result = conclave_server::app::open_db(&settings)
                .map_err(keys::KeyError::from)
                .and_then(|db| match command {
                    KeysCommand::Rotate => keys::rotate(&settings, &db),
                    KeysCommand::Rewrap => keys::rewrap(&settings, &db),
                    KeysCommand::Status => keys::status(&settings, &db),
                    KeysCommand::Remove { key_id } => keys::remove(&settings, &db, &key_id),
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("conclave: {err}");
                    ExitCode::from(if matches!(err, keys::KeyError::Usage(_)) {
                        2
                    } else {
                        1
                    })
                }
            }
        }
        Command::Serve(_) => {
            let exporting = match telemetry::init_serving(&settings.log, &settings.telemetry) {
                Ok(exporting) => exporting,
                Err(err) => {
                    eprintln!("conclave: {err}");
                    return ExitCode::from(1);
                }
            };
            let runtime = actix_web::rt::System::new();
            let served = runtime.block_on(serve::run(settings));
            drop(runtime);
            if let Some(exporting) = exporting {
                exporting.shutdown();
            }
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %err, "conclave serve failed");
                    eprintln!("conclave: {err}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn report(result: Result<(), admin::CommandError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("conclave: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
