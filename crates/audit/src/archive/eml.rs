//! The EML archive format: one RFC 5322 message per conversation per UTC day, which any mail
//! archive or eDiscovery tool can ingest (the way Global Relay and Smarsh take chat).
//!
//! - `From`: everyone who did something that day (senders, editors, reactors, ...), in order
//!   of first appearance; `Sender`: the archive's own mailbox, as RFC 5322 asks when `From`
//!   holds several. `To`: every participant of the day (the given participants plus anyone
//!   an event names).
//! - `Date`: the day's first event (midnight UTC when there is none); `Subject`:
//!   `Conversation <name> — <YYYY-MM-DD>`; `Message-ID`: derived from room and day
//!   (`<conclave.<room>.<YYYYMMDD>@<domain>>`), so exporting the same day again yields the
//!   same id and archives deduplicate it. `X-Conclave-Room-Id`,
//!   `X-Conclave-Conversation-Kind` and `X-Conclave-Day` say what it covers.
//! - A `text/plain` body lists each event with its UTC time and who did it; message text
//!   is indented beneath. Attachments whose content is included follow as `base64` MIME
//!   parts (byte-exact); the body names every attachment and whether it is attached.
//!
//! Addresses are a person's e-mail when it is a plain `local@domain`, otherwise
//! `<username>@<EmlOptions::domain>` made safe (a directory e-mail is never trusted to be
//! well-formed). Header values go through `mail-builder`, which writes RFC 2047 encoded
//! words for non-ASCII and quotes what needs quoting; control characters are removed from
//! every user-controlled value before it reaches a header, so a name cannot inject headers.
//!
//! The message is built whole before it is written (MIME needs the parts), so a
//! conversation-day's included attachments are in memory while it is written; the runner
//! bounds that by what it includes.

use super::{ArchiveError, ArchiveEvent, Conversation, ConversationKind, EventKind, Person};
use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

/// How EML messages address people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmlOptions {
    /// The domain for people without a usable e-mail address, and for the archive's own
    /// mailbox and message ids. `conclave.invalid` by default (RFC 2606: never delivered).
    pub domain: String,
}

impl Default for EmlOptions {
    fn default() -> Self {
        Self {
            domain: "conclave.invalid".into(),
        }
    }
}

/// The local part of the archive's own mailbox (`Sender`, and `From` on a day without
/// actors).
pub const ARCHIVE_MAILBOX: &str = "compliance-archive";

/// Writes the message for `conversation` on the UTC calendar `day`: `participants` are its
/// members that day, `events` its events in time order (each must belong to the
/// conversation and fall on `day`).
pub fn write_conversation_day(
    conversation: &Conversation,
    day: time::Date,
    participants: &[Person],
    events: &[ArchiveEvent],
    options: &EmlOptions,
    out: impl Write,
) -> Result<(), ArchiveError> {
    if !is_domain(&options.domain) {
        return Err(ArchiveError::InvalidEvent(format!(
            "`{}` is not a domain name usable in e-mail addresses",
            options.domain
        )));
    }
    for event in events {
        event.validate()?;
        if event.conversation.room_id != conversation.room_id {
            return Err(ArchiveError::InvalidEvent(format!(
                "an event of conversation {} was given for conversation {}",
                event.conversation.room_id, conversation.room_id
            )));
        }
        if super::datetime(event.at).date() != day {
            return Err(ArchiveError::InvalidEvent(format!(
                "an event at {} is not on {day}",
                event.at
            )));
        }
    }

    let domain = options.domain.as_str();
    let archive_mailbox = || {
        Address::new_address(
            Some("Conclave compliance archive"),
            format!("{ARCHIVE_MAILBOX}@{domain}"),
        )
    };
    let actors = distinct(events.iter().map(|event| &*event.actor));
    let everyone = distinct(
        participants
            .iter()
            .chain(events.iter().flat_map(ArchiveEvent::people)),
    );
    let from = if actors.is_empty() {
        archive_mailbox()
    } else {
        Address::new_list(
            actors
                .iter()
                .map(|person| address(person, domain))
                .collect(),
        )
    };
    let date = events
        .first()
        .map(|event| event.at.as_micros().div_euclid(1_000_000))
        .unwrap_or_else(|| day.midnight().assume_utc().unix_timestamp());
    let day_text = day.to_string();
    let title = title(conversation, &everyone);

    let mut message = MessageBuilder::new()
        .message_id(MessageId::new(format!(
            "conclave.{}.{}@{domain}",
            atext(&conversation.room_id),
            day_text.replace('-', "")
        )))
        .date(Date::new(date))
        .from(from)
        .sender(archive_mailbox())
        .to(if everyone.is_empty() {
            archive_mailbox()
        } else {
            Address::new_list(
                everyone
                    .iter()
                    .map(|person| address(person, domain))
                    .collect(),
            )
        })
        .subject(Text::new(format!("{title} — {day_text}")))
        .header(
            "X-Conclave-Room-Id",
            Text::new(header_safe(&conversation.room_id)),
        )
        .header(
            "X-Conclave-Conversation-Kind",
            Text::new(conversation.kind.as_str()),
        )
        .header("X-Conclave-Day", Text::new(day_text.clone()))
        .text_body(body(conversation, &day_text, &everyone, events, domain));

    for event in events {
        let Some(attachment) = &event.attachment else {
            continue;
        };
        let Some(content) = &attachment.content else {
            continue;
        };
        let bytes = content
            .read_all()
            .map_err(|source| ArchiveError::Attachment {
                id: attachment.id.clone(),
                source,
            })?;
        // Encoded here rather than by mail-builder, which would pick quoted-printable for
        // text/* files and could change their line ends: attachments must stay byte-exact.
        let part = MimePart::new(
            ContentType::new(mime_type(&attachment.content_type)),
            BodyPart::Binary(Cow::Owned(base64_lines(&bytes))),
        )
        .attachment(header_safe(&attachment.name))
        .transfer_encoding("base64");
        // Pushed directly: mail-builder's `attachment` builds the part itself, without
        // letting us choose the transfer encoding.
        message.attachments.get_or_insert_with(Vec::new).push(part);
    }
    message.write_to(out)?;
    Ok(())
}

/// People in order of first appearance, once each (by user id).
fn distinct<'a>(people: impl Iterator<Item = &'a Person>) -> Vec<&'a Person> {
    let mut seen = std::collections::HashSet::new();
    people
        .filter(|person| seen.insert(person.user_id.as_str()))
        .collect()
}

/// The subject's and body's name for the conversation.
fn title(conversation: &Conversation, people: &[&Person]) -> String {
    match (&conversation.name, conversation.kind) {
        (Some(name), _) if !header_safe(name).is_empty() => {
            format!("Conversation {}", header_safe(name))
        }
        (_, ConversationKind::Direct) if !people.is_empty() => format!(
            "Direct conversation {}",
            people
                .iter()
                .map(|person| header_safe(shown_name(person)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("Conversation {}", header_safe(&conversation.room_id)),
    }
}

fn shown_name(person: &Person) -> &str {
    if person.display_name.trim().is_empty() {
        &person.username
    } else {
        &person.display_name
    }
}

/// A mailbox for `person`: their e-mail if it is a plain address, else one made from the
/// username under `domain`.
fn address<'a>(person: &Person, domain: &str) -> Address<'a> {
    let email = match &person.email {
        Some(email) if is_plain_address(email) => email.clone(),
        _ => {
            let mut local = atext(&person.username);
            if local.is_empty() {
                local = format!("user.{}", atext(&person.user_id));
            }
            format!("{local}@{domain}")
        }
    };
    Address::new_address(Some(header_safe(shown_name(person))), email)
}

/// `local@domain` with a dot-atom local part and a plain domain: the only addresses used
/// as given, since anything else (quoted local parts, comments, brackets) could confuse
/// the tools reading the archive.
fn is_plain_address(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    local.len() <= 64
        && !local.is_empty()
        && local.chars().all(|c| is_atext(c) || c == '.')
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && is_domain(domain)
}

fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// RFC 5322 `atext`, the characters a dot-atom may hold besides dots.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// `raw` as a dot-atom: other characters become `_`, dots are kept only between atoms.
fn atext(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| if is_atext(c) || c == '.' { c } else { '_' })
        .collect();
    mapped
        .split('.')
        .filter(|atom| !atom.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// A user-controlled value made fit for a header: control characters (CR and LF above
/// all) become spaces, runs of whitespace collapse, so no value can end a header early.
fn header_safe(raw: &str) -> String {
    raw.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `type/subtype` of a declared content type when it is a well-formed MIME type,
/// else `application/octet-stream` (the declared value came from the uploader).
fn mime_type(declared: &str) -> String {
    let essence = declared.split(';').next().unwrap_or_default().trim();
    let token = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c))
    };
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => essence.to_ascii_lowercase(),
        _ => "application/octet-stream".into(),
    }
}

/// Base64 in lines of 76 characters, CRLF-terminated (RFC 2045).
fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `Display Name (username)`, one line.
fn who(person: &Person) -> String {
    format!(
        "{} ({})",
        header_safe(shown_name(person)),
        header_safe(&person.username)
    )
}

/// Message text as indented body lines. Line ends are normalised and other control
/// characters shown as U+FFFD, so user text cannot break the listing's layout; the exact
/// text is in the JSONL format.
fn indented(out: &mut String, prefix: &str, text: &str) {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalised.split('\n') {
        let line: String = line
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect();
        let _ = writeln!(out, "{prefix}{line}");
    }
}

fn body(
    conversation: &Conversation,
    day: &str,
    everyone: &[&Person],
    events: &[ArchiveEvent],
    domain: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", title(conversation, everyone));
    let _ = writeln!(
        out,
        "Room id: {} ({})",
        header_safe(&conversation.room_id),
        conversation.kind.as_str()
    );
    let _ = writeln!(out, "Day: {day} (all times UTC)");
    let _ = writeln!(out, "Participants:");
    for person in everyone {
        let email = match &person.email {
            Some(email) if is_plain_address(email) => email.clone(),
            _ => format!("{}@{domain}", atext(&person.username)),
        };
        let _ = writeln!(out, "  - {} <{email}> [{}]", who(person), person.user_id);
    }
    if events.is_empty() {
        let _ = writeln!(out, "\n(no events)");
    }
    for event in events {
        let time = super::datetime(event.at);
        let _ = write!(
            out,
            "\n[{:02}:{:02}:{:02}] ",
            time.hour(),
            time.minute(),
            time.second()
        );
        let actor = who(&event.actor);
        let id = header_safe(event.message_id.as_deref().unwrap_or_default());
        let reply = event
            .reply_to_id
            .as_deref()
            .map(|reply| format!(", replying to {}", header_safe(reply)))
            .unwrap_or_default();
        match &event.kind {
            EventKind::Message => {
                let _ = writeln!(out, "{actor} sent message {id}{reply}:");
            }
            EventKind::Edited {
                previous_text,
                version,
            } => {
                let _ = writeln!(out, "{actor} edited message {id} (now version {version}):");
                if let Some(previous) = previous_text {
                    let _ = writeln!(out, "    Previous text:");
                    indented(&mut out, "    > ", previous);
                    let _ = writeln!(out, "    New text:");
                }
            }
            EventKind::Deleted => {
                let _ = writeln!(out, "{actor} deleted message {id}.");
            }
            EventKind::Expired => {
                let _ = writeln!(out, "Message {id} from {actor} expired.");
            }
            EventKind::Burned { for_user } => {
                let _ = writeln!(
                    out,
                    "Message {id} from {actor} burned after reading for {}.",
                    who(for_user)
                );
            }
            EventKind::Reaction { emoji, added } => {
                let emoji = header_safe(emoji);
                let _ = if *added {
                    writeln!(out, "{actor} reacted {emoji} to message {id}.")
                } else {
                    writeln!(
                        out,
                        "{actor} removed the reaction {emoji} from message {id}."
                    )
                };
            }
            EventKind::MemberJoined { member } => {
                let _ = if member.user_id == event.actor.user_id {
                    writeln!(out, "{actor} joined the conversation.")
                } else {
                    writeln!(out, "{actor} added {} to the conversation.", who(member))
                };
            }
            EventKind::MemberLeft { member } => {
                let _ = if member.user_id == event.actor.user_id {
                    writeln!(out, "{actor} left the conversation.")
                } else {
                    writeln!(
                        out,
                        "{actor} removed {} from the conversation.",
                        who(member)
                    )
                };
            }
            EventKind::FileDeleted => {
                let _ = writeln!(out, "A file of message {id} from {actor} was deleted.");
            }
        }
        if let Some(text) = &event.text {
            indented(&mut out, "    ", text);
        }
        if let Some(attachment) = &event.attachment {
            let _ = writeln!(
                out,
                "    Attachment: {} ({}, {} bytes, SHA-256 {}){}",
                header_safe(&attachment.name),
                mime_type(&attachment.content_type),
                attachment.size_bytes,
                attachment.sha256,
                if attachment.included() {
                    ", attached to this message"
                } else {
                    ", not included in this export"
                }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_addresses_are_used_as_given() {
        assert!(is_plain_address("alice.smith+x@example.org"));
        for bad in [
            "alice",
            "a@b@c",
            "\"a b\"@example.org",
            "alice@exa mple.org",
            "alice@example.org\r\nBcc: x@y.z",
            "alice@example.org>, <eve@evil.example",
            ".alice@example.org",
            "alice@-example.org",
            "élise@example.org",
        ] {
            assert!(!is_plain_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn local_parts_and_headers_are_made_safe() {
        assert_eq!(atext("alice@corp"), "alice_corp");
        assert_eq!(atext("..a..b."), "a.b");
        assert_eq!(atext("Zoë <x>"), "Zo___x_");
        assert_eq!(header_safe("Eve\r\nBcc: x@y.z"), "Eve Bcc: x@y.z");
        assert_eq!(mime_type("Text/Plain; charset=utf-8"), "text/plain");
        assert_eq!(
            mime_type("text/plain\r\nX-Evil: 1"),
            "application/octet-stream"
        );
        assert_eq!(mime_type("nonsense"), "application/octet-stream");
    }

    #[test]
    fn base64_lines_are_76_characters() {
        let encoded = base64_lines(&[0u8; 100]);
        let text = String::from_utf8(encoded).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines.last(), Some(&""));
    }
}
