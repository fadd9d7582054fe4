//! Time. Everything that asks "what time is it" asks a [`Clock`], so tests move time
//! instead of sleeping. Instants are [`Timestamp`]s: microseconds since the Unix epoch, UTC,
//! which is also how every database column stores them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant as microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// This instant plus `duration`, saturating instead of overflowing.
    pub fn plus(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// This instant minus `duration`, saturating instead of overflowing.
    pub fn minus(self, duration: Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros))
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        let micros = later.0.saturating_sub(self.0).max(0);
        Duration::from_micros(micros as u64)
    }

    /// RFC 3339 in UTC with microseconds, the form the API uses.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("@{}us", self.0))
    }

    /// Parses an RFC 3339 timestamp (any offset; sub-microsecond digits are dropped).
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| format!("`{text}` is not an RFC 3339 timestamp"))?;
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000)
            .map(Self)
            .map_err(|_| format!("`{text}` is out of range"))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 timestamp in UTC"))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

/// The source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp((nanos / 1_000) as i64)
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn starting_at(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_micros())))
    }

    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.as_micros(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_micros() {
        let t = Timestamp::from_micros(1_764_000_000_123_456);
        assert_eq!(t.to_rfc3339(), "2025-11-24T16:00:00.123456Z");
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_micros(i64::MAX - 1);
        assert_eq!(t.plus(Duration::from_secs(10)).as_micros(), i64::MAX);
        let t = Timestamp::from_micros(i64::MIN + 1);
        assert_eq!(t.minus(Duration::from_secs(10)).as_micros(), i64::MIN);
    }

    #[test]
    fn until_is_never_negative() {
        let a = Timestamp::from_micros(10);
        let b = Timestamp::from_micros(5);
        assert_eq!(a.until(b), Duration::ZERO);
        assert_eq!(b.until(a), Duration::from_micros(5));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_at(Timestamp::from_micros(0));
        let shared = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_micros(0));
        shared.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_micros(2_000_000));
        clock.set(Timestamp::from_micros(7));
        assert_eq!(shared.now(), Timestamp::from_micros(7));
    }

    #[test]
    fn system_clock_is_after_2025() {
        assert!(SystemClock.now() > Timestamp::from_micros(1_735_689_600_000_000));
    }
}
