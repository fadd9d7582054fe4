//! Lists of rows bound as one JSON array: a batch's values go to the database as a single
//! parameter instead of a placeholder each (which SQLite parses one by one), read as rows
//! by `json_each` on SQLite and `json_array_elements` on PostgreSQL. Elements are JSON
//! arrays, read by position. Diesel does not cache these statements (their text is
//! built at run time), so each call is parsed and planned: the cost that remains in a
//! batch of sends (docs/performance.md).

use crate::DbConnection;

/// The SQL to read a bound JSON array of arrays, for the connection's backend.
#[derive(Clone, Copy)]
pub(crate) struct JsonRows {
    postgres: bool,
}

impl JsonRows {
    pub(crate) fn of(conn: &DbConnection) -> Self {
        Self {
            postgres: matches!(conn, DbConnection::Postgresql(_)),
        }
    }

    /// A table source with one row per element of the array bound at `placeholder`
    /// (text), in a column named `value`; `count` is how many elements it has.
    ///
    /// PostgreSQL cannot estimate a JSON array's length (it assumes 100 elements), and
    /// with that estimate it hashed a batch's few keys and scanned whole tables of a few
    /// thousand rows on every call, measured. A `LIMIT` of the actual count gives it the
    /// estimate, and it probes the index for each element instead; SQLite probes anyway.
    pub(crate) fn source(self, placeholder: &str, count: usize) -> String {
        self.elements("json_array_elements", placeholder, count)
    }

    /// Like [`Self::source`], for an array of strings: `value` is each string.
    pub(crate) fn text_source(self, placeholder: &str, count: usize) -> String {
        self.elements("json_array_elements_text", placeholder, count)
    }

    fn elements(self, postgres_function: &str, placeholder: &str, count: usize) -> String {
        if self.postgres {
            format!(
                "(SELECT value FROM {postgres_function}(CAST({placeholder} AS json)) \
                 AS elements(value) LIMIT {count}) AS elements"
            )
        } else {
            format!("json_each({placeholder})")
        }
    }

    /// The `index`th item of the row's element, as text.
    pub(crate) fn text(self, index: usize) -> String {
        if self.postgres {
            format!("(value->>{index})")
        } else {
            format!("json_extract(value, '$[{index}]')")
        }
    }

    /// The `index`th item of the row's element, as a 64-bit integer.
    pub(crate) fn bigint(self, index: usize) -> String {
        if self.postgres {
            format!("CAST(value->>{index} AS BIGINT)")
        } else {
            format!("json_extract(value, '$[{index}]')")
        }
    }
}
