//! Database spans: every SQL statement a connection runs becomes a `db.query` span
//! (level DEBUG, this module's target) under the caller's span, named by its operation,
//! with the statement's text but never its bind values (they hold ciphertext, token
//! hashes, names). With OpenTelemetry export on, they are the database calls of each
//! request's trace; otherwise the default log filter disables them and a statement costs
//! one callsite check.

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// Longest statement text kept on a span: batch inserts can run to many kilobytes.
const MAX_STATEMENT_CHARS: usize = 2048;

/// Installed on every connection by [`crate::connection::Backend::connect`].
pub struct QuerySpans {
    system: &'static str,
    /// The statement running now (a connection runs one at a time).
    running: Option<tracing::Span>,
}

impl QuerySpans {
    /// `system`: the OpenTelemetry `db.system.name`, `postgresql` or `sqlite`.
    pub fn new(system: &'static str) -> Self {
        Self {
            system,
            running: None,
        }
    }
}

impl Instrumentation for QuerySpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                let span = tracing::debug_span!(
                    "db.query",
                    otel.name = tracing::field::Empty,
                    otel.kind = "client",
                    otel.status_code = tracing::field::Empty,
                    db.system.name = self.system,
                    db.operation.name = tracing::field::Empty,
                    db.query.text = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                );
                if !span.is_disabled() {
                    let rendered = query.to_string();
                    let statement = statement_text(&rendered);
                    let operation = statement
                        .split_whitespace()
                        .next()
                        .unwrap_or("SQL")
                        .to_ascii_uppercase();
                    span.record("otel.name", operation.as_str());
                    span.record("db.operation.name", operation.as_str());
                    span.record("db.query.text", statement);
                }
                self.running = Some(span);
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                if let (Some(span), Some(error)) = (self.running.take(), error) {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", error_type(error));
                }
            }
            _ => {}
        }
    }
}

/// The SQL of diesel's debug rendering, without the bind values it appends.
fn statement_text(rendered: &str) -> &str {
    let sql = rendered
        .rsplit_once(" -- binds: ")
        .map_or(rendered, |(sql, _)| sql)
        .trim();
    match sql.char_indices().nth(MAX_STATEMENT_CHARS) {
        Some((cut, _)) => &sql[..cut],
        None => sql,
    }
}

/// A stable class of the failure, never its message (which can quote values).
fn error_type(error: &diesel::result::Error) -> &'static str {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => "unique_violation",
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => "foreign_key_violation",
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => "serialization_failure",
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => "closed_connection",
        Error::DatabaseError(..) => "database_error",
        Error::NotFound => "not_found",
        Error::RollbackTransaction => "rollback",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_values_never_reach_the_span() {
        assert_eq!(
            statement_text(
                r#"SELECT "users"."id" FROM "users" WHERE "users"."email" = $1 -- binds: ["alice@example.org"]"#
            ),
            r#"SELECT "users"."id" FROM "users" WHERE "users"."email" = $1"#
        );
        assert_eq!(statement_text("BEGIN IMMEDIATE"), "BEGIN IMMEDIATE");
    }

    #[test]
    fn long_statements_are_cut() {
        let long = format!("INSERT INTO t VALUES {}", "(?), ".repeat(2000));
        assert_eq!(statement_text(&long).chars().count(), MAX_STATEMENT_CHARS);
    }
}
