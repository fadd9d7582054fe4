"""Parses an EML file the way mail tools do and prints what it found as JSON.

Used by tests/archive.rs: Python's `email` package with the modern policy is a strict,
widely deployed parser, so a message it reads without defects is one archives can ingest.
The Rust test asserts on the JSON; this script only reports.
"""

import base64
import email
import json
import sys
from email import policy
from email.utils import getaddresses, parsedate_to_datetime

raw = open(sys.argv[1], "rb").read()
msg = email.message_from_bytes(raw, policy=policy.default)
defects = [repr(d) for part in msg.walk() for d in part.defects]


def addresses(name):
    value = msg[name]
    if value is None:
        return None
    return [[a.display_name, a.addr_spec] for a in value.addresses]


body = msg.get_body(("plain",))
report = {
    "defects": defects,
    "header_names": [k for k, _ in msg.items()],
    "from": addresses("From"),
    "sender": addresses("Sender"),
    "to": addresses("To"),
    "subject": str(msg["Subject"]),
    "message_id": str(msg["Message-ID"]),
    "date": parsedate_to_datetime(msg["Date"]).isoformat(),
    "room_id": str(msg["X-Conclave-Room-Id"]),
    "kind": str(msg["X-Conclave-Conversation-Kind"]),
    "day": str(msg["X-Conclave-Day"]),
    "content_type": msg.get_content_type(),
    "body": body.get_content() if body is not None else None,
    "attachments": [
        {
            "filename": part.get_filename(),
            "content_type": part.get_content_type(),
            "transfer_encoding": part["Content-Transfer-Encoding"],
            "payload_base64": base64.b64encode(part.get_payload(decode=True)).decode(),
        }
        for part in msg.iter_attachments()
    ],
    # getaddresses over the raw header text catches an address smuggled past the parser.
    "raw_to_count": len(getaddresses([str(msg["To"])])),
}
print(json.dumps(report))
