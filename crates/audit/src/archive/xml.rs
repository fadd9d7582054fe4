//! The XML archive format, in the style of Actiance/Smarsh archives: one document holding
//! conversations, each with the participants present at its start, then its events in time
//! order (participants joining and leaving, messages, edits, deletes, expirations, burns,
//! reactions, deleted files), then its end time. `crates/audit/schema/conclave-archive.xsd`
//! describes it exactly, and the tests validate every document the writer produces against
//! it.
//!
//! ```xml
//! <archive xmlns="urn:conclave:archive:1" formatVersion="1" exportId="..." generatedAt="..."
//!          periodStart="..." periodEnd="...">
//!   <conversation roomId="..." kind="room">
//!     <name>Budget</name>
//!     <startTime>2026-11-25T00:00:00Z</startTime>
//!     <participants><participant userId="..."><username/><displayName/><email/></participant></participants>
//!     <message at="..." messageId="..."><actor userId="...">...</actor><text>...</text>
//!       <attachment id="..." contentType="..." sizeBytes="..." sha256="..." included="true" path="files/...">
//!         <name>...</name></attachment>
//!       <recipients count="2"><recipient userId="..." username="..."/>...</recipients></message>
//!     <participantJoined at="..."><actor .../><member .../></participantJoined>
//!     ...
//!     <endTime>2026-11-26T00:00:00Z</endTime>
//!   </conversation>
//! </archive>
//! ```
//!
//! User-controlled strings (names, text, file names) are element content; attributes carry
//! ids, times and enumerations (and are escaped all the same). Characters XML 1.0 cannot
//! carry at all (most C0 controls, U+FFFE, U+FFFF) become U+FFFD; carriage returns are
//! written as `&#13;` so a parser keeps them. JSONL is the format that keeps every byte.

use super::{
    ArchiveError, ArchiveEvent, AttachmentMeta, Conversation, EventKind, ExportInfo, Person,
};
use conclave_core::Timestamp;
use quick_xml::Writer;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;
use std::borrow::Cow;
use std::io::Write;

/// The document's namespace (also the XSD's `targetNamespace`).
pub const NAMESPACE: &str = "urn:conclave:archive:1";

/// Streams one archive document: [`XmlWriter::new`], then for each conversation
/// [`begin_conversation`](XmlWriter::begin_conversation), its events in time order with
/// [`write_event`](XmlWriter::write_event), [`end_conversation`](XmlWriter::end_conversation);
/// finally [`finish`](XmlWriter::finish). A resumable export can stop between
/// conversations and carry on with [`XmlWriter::continuing`].
pub struct XmlWriter<W: Write> {
    xml: Writer<Output<W>>,
    /// The room id of the open conversation.
    open: Option<String>,
}

impl<W: Write> XmlWriter<W> {
    /// Writes the XML declaration and the root element's start.
    pub fn new(out: W, info: &ExportInfo) -> Result<Self, ArchiveError> {
        let mut xml = Writer::new_with_indent(
            Output {
                inner: out,
                muted: false,
            },
            b' ',
            2,
        );
        xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let mut writer = Self { xml, open: None };
        writer.start(
            "archive",
            &[
                ("xmlns", NAMESPACE),
                ("formatVersion", "1"),
                ("exportId", &info.export_id),
                ("generatedAt", &info.generated_at.to_rfc3339()),
                ("periodStart", &info.period_start.to_rfc3339()),
                ("periodEnd", &info.period_end.to_rfc3339()),
            ],
        )?;
        Ok(writer)
    }

    /// Continues a document that already has its root start and whole conversations (a
    /// resumed export whose output was cut back to the end of the last finished one).
    pub fn continuing(out: W) -> Self {
        let mut xml = Writer::new_with_indent(
            Output {
                inner: out,
                muted: true,
            },
            b' ',
            2,
        );
        // The root start is already in the file; "writing" it muted only puts the
        // writer's indentation and nesting where the file left off.
        let _ = xml.write_event(Event::Start(BytesStart::new("archive")));
        xml.get_mut().muted = false;
        Self { xml, open: None }
    }

    /// Flushes the output, e.g. before recording how far a resumable export got.
    pub fn flush(&mut self) -> Result<(), ArchiveError> {
        self.xml.get_mut().inner.flush()?;
        Ok(())
    }

    /// Opens a conversation; `participants` are its members at `start`. Later joins and
    /// leaves come as events.
    pub fn begin_conversation(
        &mut self,
        conversation: &Conversation,
        start: Timestamp,
        participants: &[Person],
    ) -> Result<(), ArchiveError> {
        if let Some(open) = &self.open {
            return Err(ArchiveError::Sequence(format!(
                "conversation {open} is still open; end it before beginning another"
            )));
        }
        // The schema requires these ids; refuse here rather than write an invalid file.
        if conversation.room_id.is_empty() || participants.iter().any(|p| p.user_id.is_empty()) {
            return Err(ArchiveError::InvalidEvent(
                "a conversation needs a room id and its participants user ids".into(),
            ));
        }
        self.start(
            "conversation",
            &[
                ("roomId", &conversation.room_id),
                ("kind", conversation.kind.as_str()),
            ],
        )?;
        if let Some(name) = &conversation.name {
            self.text_element("name", &[], name)?;
        }
        self.text_element("startTime", &[], &start.to_rfc3339())?;
        self.start("participants", &[])?;
        for participant in participants {
            self.person("participant", participant)?;
        }
        self.end("participants")?;
        self.open = Some(conversation.room_id.clone());
        Ok(())
    }

    /// Validates and writes one event of the open conversation.
    pub fn write_event(&mut self, event: &ArchiveEvent) -> Result<(), ArchiveError> {
        event.validate()?;
        match &self.open {
            None => {
                return Err(ArchiveError::Sequence(
                    "an event was written outside a conversation".into(),
                ));
            }
            Some(open) if *open != event.conversation.room_id => {
                return Err(ArchiveError::InvalidEvent(format!(
                    "an event of conversation {} was written into conversation {open}",
                    event.conversation.room_id
                )));
            }
            Some(_) => {}
        }
        let at = event.at.to_rfc3339();
        let sent_at = event.message_sent_at.map(Timestamp::to_rfc3339);
        let version = match &event.kind {
            EventKind::Edited { version, .. } => Some(version.to_string()),
            _ => None,
        };
        let mut attributes: Vec<(&str, &str)> = vec![("at", &at)];
        if let Some(id) = &event.message_id {
            attributes.push(("messageId", id));
        }
        if let Some(sent_at) = &sent_at {
            attributes.push(("messageSentAt", sent_at));
        }
        if let Some(id) = &event.reply_to_id {
            attributes.push(("replyTo", id));
        }
        if let Some(version) = &version {
            attributes.push(("version", version));
        }
        if let EventKind::Reaction { added, .. } = &event.kind {
            attributes.push(("added", if *added { "true" } else { "false" }));
        }
        let element = element_name(&event.kind);
        self.start(element, &attributes)?;
        self.person("actor", &event.actor)?;
        // Kind-specific children come right after the actor (the XSD fixes this order).
        match &event.kind {
            EventKind::Edited { previous_text, .. } => {
                if let Some(previous) = previous_text {
                    self.text_element("previousText", &[], previous)?;
                }
            }
            EventKind::Burned { for_user } => self.person("forUser", for_user)?,
            EventKind::Reaction { emoji, .. } => self.text_element("emoji", &[], emoji)?,
            EventKind::MemberJoined { member } | EventKind::MemberLeft { member } => {
                self.person("member", member)?;
            }
            EventKind::Message
            | EventKind::Deleted
            | EventKind::Expired
            | EventKind::FileDeleted => {}
        }
        if let Some(text) = &event.text {
            self.text_element("text", &[], text)?;
        }
        if let Some(attachment) = &event.attachment {
            self.attachment(attachment)?;
        }
        if !event.recipients.is_empty() {
            let count = event.recipients.len().to_string();
            self.start("recipients", &[("count", &count)])?;
            for recipient in event.recipients.iter() {
                self.empty(
                    "recipient",
                    &[
                        ("userId", &recipient.user_id),
                        ("username", &recipient.username),
                    ],
                )?;
            }
            self.end("recipients")?;
        }
        self.end(element)
    }

    /// Closes the open conversation with its end time.
    pub fn end_conversation(&mut self, end: Timestamp) -> Result<(), ArchiveError> {
        if self.open.take().is_none() {
            return Err(ArchiveError::Sequence(
                "end_conversation without an open conversation".into(),
            ));
        }
        self.text_element("endTime", &[], &end.to_rfc3339())?;
        self.end("conversation")
    }

    /// Closes the document, flushes and returns the output.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        if let Some(open) = &self.open {
            return Err(ArchiveError::Sequence(format!(
                "conversation {open} was not ended"
            )));
        }
        self.end("archive")?;
        let mut out = self.xml.into_inner().inner;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(out)
    }

    fn start(&mut self, name: &str, attributes: &[(&str, &str)]) -> Result<(), ArchiveError> {
        self.xml.write_event(Event::Start(tag(name, attributes)))?;
        Ok(())
    }

    fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> Result<(), ArchiveError> {
        self.xml.write_event(Event::Empty(tag(name, attributes)))?;
        Ok(())
    }

    fn end(&mut self, name: &str) -> Result<(), ArchiveError> {
        self.xml.write_event(Event::End(BytesEnd::new(name)))?;
        Ok(())
    }

    fn text_element(
        &mut self,
        name: &str,
        attributes: &[(&str, &str)],
        text: &str,
    ) -> Result<(), ArchiveError> {
        self.start(name, attributes)?;
        self.xml
            .write_event(Event::Text(BytesText::from_escaped(escape_text(text))))?;
        self.end(name)
    }

    fn person(&mut self, element: &str, person: &Person) -> Result<(), ArchiveError> {
        self.start(element, &[("userId", &person.user_id)])?;
        self.text_element("username", &[], &person.username)?;
        self.text_element("displayName", &[], &person.display_name)?;
        if let Some(email) = &person.email {
            self.text_element("email", &[], email)?;
        }
        self.end(element)
    }

    fn attachment(&mut self, attachment: &AttachmentMeta) -> Result<(), ArchiveError> {
        let size = attachment.size_bytes.to_string();
        let path = attachment.archive_path();
        let mut attributes: Vec<(&str, &str)> = vec![
            ("id", &attachment.id),
            ("contentType", &attachment.content_type),
            ("sizeBytes", &size),
            ("sha256", &attachment.sha256),
            (
                "included",
                if attachment.included() {
                    "true"
                } else {
                    "false"
                },
            ),
        ];
        if attachment.included() {
            attributes.push(("path", &path));
        }
        self.start("attachment", &attributes)?;
        self.text_element("name", &[], &attachment.name)?;
        self.end("attachment")
    }
}

/// The output, which [`XmlWriter::continuing`] mutes while it restores the nesting.
struct Output<W> {
    inner: W,
    muted: bool,
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.muted {
            Ok(buf.len())
        } else {
            self.inner.write(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The element an event kind is written as.
fn element_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Message => "message",
        EventKind::Edited { .. } => "edited",
        EventKind::Deleted => "deleted",
        EventKind::Expired => "expired",
        EventKind::Burned { .. } => "burned",
        EventKind::Reaction { .. } => "reaction",
        EventKind::MemberJoined { .. } => "participantJoined",
        EventKind::MemberLeft { .. } => "participantLeft",
        EventKind::FileDeleted => "fileDeleted",
    }
}

/// A start tag whose attribute values are escaped by [`escape_attribute`] (quick-xml's own
/// escaping leaves tabs and line breaks, which a parser would turn into spaces).
fn tag<'a>(name: &'a str, attributes: &[(&'a str, &str)]) -> BytesStart<'a> {
    let mut start = BytesStart::new(name);
    for (key, value) in attributes {
        start.push_attribute(Attribute {
            key: QName(key),
            value: Cow::Owned(escape_attribute(value)),
        });
    }
    start
}

/// Whether XML 1.0 can carry `c` at all, even as a character reference.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes element content: markup characters, `>` (so `]]>` cannot appear), and CR (which
/// a parser would otherwise normalise away); replaces characters XML cannot carry.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// Escapes an attribute value for double quotes, keeping whitespace characters exact.
fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_documents_well_formed() {
        assert_eq!(
            escape_text("a<b>&]]>\r\n\u{0}\u{1b}\u{FFFE}é"),
            "a&lt;b&gt;&amp;]]&gt;&#13;\n\u{FFFD}\u{FFFD}\u{FFFD}é"
        );
        assert_eq!(
            escape_attribute("\"x\"\t\r\n'<"),
            "&quot;x&quot;&#9;&#13;&#10;'&lt;"
        );
    }
}
