//! WebSocket client frames, as the server reads them: bytes off the wire through
//! actix-http's frame decoder with the server's frame-size limit (`max_size`), then every
//! text frame through the JSON client-frame parser, and the handshake's `resume` query.
//! A frame over the limit must be refused, never buffered.
#![no_main]

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, ProtocolError};
use bytes::BytesMut;
use conclave_messaging::realtime::ws::{parse_client_frame, parse_resume};
use libfuzzer_sys::fuzz_target;

/// The default `messaging.websocket_max_frame_bytes` is 64 KiB; a small limit here makes
/// the over-limit path reachable with small inputs.
const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_client_frame(text);
        let _ = parse_resume(text);
    }
    let mut codec = Codec::new().max_size(MAX_FRAME);
    let mut buffer = BytesMut::from(data);
    // Each round consumes a frame or stops: bound the rounds by the input's length.
    for _ in 0..=data.len() {
        match codec.decode(&mut buffer) {
            Ok(Some(frame)) => match frame {
                Frame::Text(bytes)
                | Frame::Binary(bytes)
                | Frame::Continuation(
                    actix_http::ws::Item::FirstText(bytes)
                    | actix_http::ws::Item::FirstBinary(bytes)
                    | actix_http::ws::Item::Continue(bytes)
                    | actix_http::ws::Item::Last(bytes),
                ) => {
                    assert!(
                        bytes.len() <= MAX_FRAME,
                        "a frame over the limit was accepted"
                    );
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        let _ = parse_client_frame(text);
                    }
                }
                Frame::Ping(_) | Frame::Pong(_) | Frame::Close(_) => {}
            },
            Ok(None) => break,
            Err(ProtocolError::Overflow) => break,
            Err(_) => break,
        }
    }
});
