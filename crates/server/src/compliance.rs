//! `conclave retention …`, `conclave holds …` and `conclave export …`: the compliance
//! officer's commands,
//! through the same service functions as the API. Each change names the compliance
//! officer account it is made as (`--as`), which must hold the role, and is audited as
//! that account acting from the server's shell.

use crate::admin::{CommandError, cli_context, open_migrated, user_id};
use crate::cli::{ExportCommand, HoldsCommand, RetentionCommand, RetentionPolicyArgs};
use crate::settings::Settings;
use conclave_core::retention::RetentionRule;
use conclave_core::{AuditContext, Clock, Role, RoomId, SystemClock, Timestamp, UserId};
use conclave_policy::PolicyServiceError;
use conclave_policy::holds::{self, HoldInput};
use conclave_policy::retention::{self, RetentionPreview, RetentionScope};
use conclave_policy::sweeper;
use conclave_store::DbConnection;

impl From<PolicyServiceError> for CommandError {
    fn from(err: PolicyServiceError) -> Self {
        match err {
            PolicyServiceError::Policy(_)
            | PolicyServiceError::NotFound
            | PolicyServiceError::Conflict(_) => CommandError::Usage(err.to_string()),
            other => CommandError::Failed(other.to_string()),
        }
    }
}

/// The officer a change is made as, and the audit context naming them.
fn officer(
    conn: &mut DbConnection,
    username: &str,
) -> Result<(UserId, AuditContext), CommandError> {
    let id = user_id(conn, username)?;
    let user = conclave_store::users::find_by_id(conn, id)?
        .ok_or_else(|| CommandError::Usage(format!("no account named `{username}`")))?;
    if user.status != conclave_core::UserStatus::Active {
        return Err(CommandError::Usage(format!(
            "`{username}` is not an active account"
        )));
    }
    if !user.roles.contains(Role::ComplianceOfficer) {
        return Err(CommandError::Usage(format!(
            "`{username}` is not a compliance officer"
        )));
    }
    let mut context = cli_context();
    context.actor_id = Some(id);
    context.actor_name = format!("{username} ({})", context.actor_name);
    Ok((id, context))
}

fn scope(raw: &str) -> Result<RetentionScope, CommandError> {
    Ok(RetentionScope::parse(raw)?)
}

fn rule(args: &RetentionPolicyArgs) -> Option<RetentionRule> {
    (args.min_days.is_some() || args.max_days.is_some()).then_some(RetentionRule {
        min_days: args.min_days,
        max_days: args.max_days,
    })
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("views serialize")
    );
}

fn print_preview(preview: &RetentionPreview) {
    println!(
        "{}: would destroy {} message(s) now and {} within 30 days; {} held",
        preview.scope, preview.destroy_now, preview.destroy_within_30_days, preview.held
    );
    if !preview.rooms.is_empty() {
        println!(
            "  {:<38} {:>11} {:>11} {:>8}  NAME",
            "ROOM", "NOW", "30 DAYS", "HELD"
        );
    }
    for room in &preview.rooms {
        println!(
            "  {:<38} {:>11} {:>11} {:>8}  {}",
            room.room_id,
            room.destroy_now,
            room.destroy_within_30_days,
            room.held,
            room.room_name.as_deref().unwrap_or(&room.room_kind)
        );
    }
}

fn instant(flag: &str, raw: Option<&str>) -> Result<Option<Timestamp>, CommandError> {
    raw.map(|text| {
        Timestamp::parse_rfc3339(text)
            .map_err(|err| CommandError::Usage(format!("--{flag}: {err}")))
    })
    .transpose()
}

pub fn retention(settings: &Settings, command: RetentionCommand) -> Result<(), CommandError> {
    let db = open_migrated(settings)?;
    let mut conn = db.conn()?;
    let now = SystemClock.now();
    match command {
        RetentionCommand::List => print_json(&retention::list(&mut conn)?),
        RetentionCommand::Preview(args) => {
            let preview = retention::preview(&mut conn, now, &scope(&args.scope)?, rule(&args))?;
            print_preview(&preview);
        }
        RetentionCommand::Set {
            policy,
            officer: username,
            yes,
        } => {
            let (by, context) = officer(&mut conn, &username)?;
            let scope = scope(&policy.scope)?;
            let rule = rule(&policy)
                .ok_or_else(|| CommandError::Usage("give --min-days, --max-days or both".into()))?;
            print_preview(&retention::preview(&mut conn, now, &scope, Some(rule))?);
            if !yes {
                return Err(CommandError::Usage(
                    "not saved: check the preview above and run again with --yes".into(),
                ));
            }
            let change = retention::set_policy(&mut conn, &context, now, by, &scope, rule)?;
            println!(
                "saved; job {} recomputes {} message(s) in the background",
                change.job.id, change.job.total
            );
        }
        RetentionCommand::Delete {
            scope: raw,
            officer: username,
        } => {
            let (by, context) = officer(&mut conn, &username)?;
            let change = retention::delete_policy(&mut conn, &context, now, by, &scope(&raw)?)?;
            println!(
                "removed; job {} recomputes {} message(s) in the background",
                change.job.id, change.job.total
            );
        }
        RetentionCommand::Jobs => print_json(&retention::jobs(&mut conn)?),
        RetentionCommand::Sweep => {
            let batches = sweeper::run_jobs(&mut conn, &SystemClock, || {})?;
            let report = sweeper::sweep(
                &mut conn,
                &settings.sweep_settings(),
                &SystemClock,
                &mut Default::default(),
                || {},
            )?;
            println!("recomputation batches run: {batches}");
            print_json(&report);
        }
    }
    Ok(())
}

pub fn holds(settings: &Settings, command: HoldsCommand) -> Result<(), CommandError> {
    let db = open_migrated(settings)?;
    let mut conn = db.conn()?;
    let now = SystemClock.now();
    match command {
        HoldsCommand::List { active } => print_json(&holds::list(&mut conn, active)?),
        HoldsCommand::Place {
            name,
            reason,
            custodians,
            rooms,
            from,
            until,
            officer: username,
        } => {
            let (by, context) = officer(&mut conn, &username)?;
            let input = HoldInput {
                name,
                reason,
                custodians: custodians
                    .iter()
                    .map(|name| user_id(&mut conn, name))
                    .collect::<Result<_, _>>()?,
                rooms: rooms
                    .iter()
                    .map(|id| {
                        id.parse::<RoomId>().map_err(|_| {
                            CommandError::Usage(format!("--room: `{id}` is not a room id"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                starts_at: instant("from", from.as_deref())?,
                ends_at: instant("until", until.as_deref())?,
            };
            print_json(&holds::place(&mut conn, &context, now, by, &input)?);
        }
        HoldsCommand::Release {
            hold_id,
            officer: username,
        } => {
            let (by, context) = officer(&mut conn, &username)?;
            print_json(&holds::release(&mut conn, &context, now, by, &hold_id)?);
        }
    }
    Ok(())
}

impl From<conclave_audit::exports::ExportError> for CommandError {
    fn from(err: conclave_audit::exports::ExportError) -> Self {
        use conclave_audit::exports::ExportError;
        match err {
            ExportError::Invalid(_) | ExportError::NotFound => CommandError::Usage(err.to_string()),
            other => CommandError::Failed(other.to_string()),
        }
    }
}

pub fn export(settings: &Settings, command: ExportCommand) -> Result<(), CommandError> {
    use conclave_audit::exports::{self, ExportRequest, Verification};
    if let ExportCommand::Verify { dir, public_key } = &command {
        let trusted = match public_key {
            Some(key) => key.clone(),
            None => crate::keys::load_audit_key(settings, false)
                .map_err(|err| {
                    CommandError::Usage(format!(
                        "{err}; pass --public-key with the key the exporting server signs with"
                    ))
                })?
                .public_key_base64(),
        };
        return match exports::verify(dir, Some(&trusted))? {
            Verification::Intact { files, events } => {
                println!(
                    "export intact: signature valid, {files} file(s) match, {events} event(s)"
                );
                Ok(())
            }
            Verification::Broken(why) => Err(CommandError::Failed(format!("export BROKEN: {why}"))),
        };
    }
    let db = open_migrated(settings)?;
    let mut conn = db.conn()?;
    match command {
        ExportCommand::List => print_json(&exports::list(&mut conn)?),
        ExportCommand::Run {
            format,
            from,
            until,
            rooms,
            custodians,
            hold,
            include_files,
            officer: username,
        } => {
            let (_, context) = officer(&mut conn, &username)?;
            let now = SystemClock.now();
            let request = ExportRequest {
                format,
                from: instant("from", Some(&from))?.unwrap_or(now),
                until: instant("until", until.as_deref())?.unwrap_or(now),
                rooms: rooms
                    .iter()
                    .map(|id| {
                        id.parse::<RoomId>().map_err(|_| {
                            CommandError::Usage(format!("--room: `{id}` is not a room id"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                custodians: custodians
                    .iter()
                    .map(|name| user_id(&mut conn, name))
                    .collect::<Result<_, _>>()?,
                hold_id: hold,
                include_files,
            };
            let job = exports::start(&mut conn, &context, now, &request, None)?;
            let key = crate::keys::load_audit_key(settings, false)
                .map_err(|err| CommandError::Failed(err.to_string()))?;
            let keyring = crate::keys::load_keyring(settings, &db)
                .map_err(|err| CommandError::Failed(err.to_string()))?;
            let source = conclave_messaging::archive::ConversationArchive {
                keyring: std::sync::Arc::new(keyring),
                attachments_dir: settings.attachments_dir(),
            };
            let read_ahead = settings.export_read_ahead(db.backend().clone());
            // Run pending jobs (this one among them) until this one has ended; a serving
            // worker may be running it meanwhile.
            loop {
                let ran = exports::run_next(
                    &mut conn,
                    &source,
                    Some(&read_ahead),
                    &key,
                    &settings.exports_dir(),
                    &SystemClock,
                )?;
                let current = exports::get(&mut conn, &job.id)?;
                match current.status.as_str() {
                    "done" => {
                        let dir = exports::bundle_dir(&settings.exports_dir(), &job.id)?;
                        println!(
                            "export {} done: {} event(s) from {} room(s) in {}",
                            job.id,
                            current.progress.events_written,
                            current.progress.rooms_done,
                            dir.display()
                        );
                        return Ok(());
                    }
                    "failed" => {
                        return Err(CommandError::Failed(format!(
                            "export {} failed: {}",
                            job.id,
                            current.error.unwrap_or_default()
                        )));
                    }
                    _ if ran.is_none() => std::thread::sleep(std::time::Duration::from_secs(1)),
                    _ => {}
                }
            }
        }
        ExportCommand::Verify { .. } => unreachable!("handled above"),
    }
    Ok(())
}
