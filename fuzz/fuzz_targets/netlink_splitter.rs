//! Arbitrary bytes as a raw netlink capture: split them with both splitters (in-memory
//! `Messages` and streaming `StreamReader`), which must agree message for message and error for
//! error, and build an `ArchivalRecord` from every framed message. Records that build are checked
//! against a small independent model of the attribute walk and must survive JSON encoding; the
//! payload parsed in place (what change detection compares) must equal the record built from it,
//! and the typed decoding of the record must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::wire::netlink::{FrameError, HEADER_LEN, Message, Messages, StreamError, StreamReader};
use tcp_info::diff::{self, Change};
use tcp_info::record::{
    ArchivalRecord, BuildError, INET_DIAG_MAX_TYPE, ParsedPayload, RAW_IDM_LEN, Timestamp,
};
use tcp_info::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let mut from_buffer: Vec<Result<Message<'_>, FrameError>> = Vec::new();
    for item in Messages::new(data) {
        assert!(
            from_buffer.last().is_none_or(Result::is_ok),
            "Messages yielded an item after an error"
        );
        if let Ok(msg) = &item {
            assert_eq!(
                msg.payload.len() + HEADER_LEN,
                msg.header.len as usize,
                "payload length disagrees with nlmsg_len"
            );
            check_record(msg);
        }
        from_buffer.push(item);
    }

    // The streaming splitter must see exactly what the buffer splitter saw.
    let mut stream = StreamReader::new(data);
    for (i, expected) in from_buffer.iter().enumerate() {
        let got = stream.next();
        match (expected, got) {
            (Ok(want), Some(Ok(owned))) => assert_eq!(owned.as_message(), *want, "message {i}"),
            (Err(want), Some(Err(StreamError::Frame(e)))) => {
                assert!(errors_agree(&e, want), "error {i}: {e:?} vs {want:?}");
            }
            (want, got) => panic!("splitters disagree at item {i}: {want:?} vs {got:?}"),
        }
    }
    assert!(
        stream.next().is_none(),
        "StreamReader yielded more items than Messages"
    );
});

/// `StreamReader::new`'s message size limit.
const STREAM_MAX_LEN: u32 = 1 << 20;

/// Whether the two splitters report the same framing error. The streaming reader refuses a
/// message over its 1 MiB limit before reading it (`TooLong`), where the buffer splitter, which
/// has every byte, reports that the length runs past the end; everything else must match exactly.
fn errors_agree(stream: &FrameError, buffer: &FrameError) -> bool {
    match (stream, buffer) {
        (
            FrameError::TooLong { offset, len, max },
            FrameError::LengthPastEnd {
                offset: want_offset,
                len: want_len,
                ..
            },
        ) => *max == STREAM_MAX_LEN && *len > *max && offset == want_offset && len == want_len,
        _ => stream == buffer,
    }
}

/// Builds the record for one framed message and checks every invariant that must hold for it.
fn check_record(msg: &Message<'_>) {
    let built = ArchivalRecord::from_netlink(msg, Timestamp::ZERO);
    let expected = model(msg);
    let (record, dropped) = match (built, expected) {
        (Ok(built), Ok(model)) => {
            let (record, dropped) = built;
            assert_eq!(
                record.attributes().collect::<Vec<_>>(),
                model.attributes,
                "attributes differ from the model"
            );
            assert_eq!(dropped.count, model.dropped, "dropped count");
            (record, dropped)
        }
        (Err(got), Err(want)) => {
            assert_eq!(got, want, "build error differs from the model");
            return;
        }
        (got, want) => panic!("build result {got:?} but the model says {want:?}"),
    };
    assert_eq!(
        record.raw_idm().len(),
        RAW_IDM_LEN,
        "RawIDM must be 72 bytes"
    );
    assert_eq!(record.raw_idm(), &msg.payload[..RAW_IDM_LEN]);
    assert!(
        (1..=usize::from(INET_DIAG_MAX_TYPE) + 1).contains(&record.attribute_count()),
        "attribute_count {} outside 1..=39",
        record.attribute_count()
    );
    assert!(dropped.count == 0 || dropped.first_type > INET_DIAG_MAX_TYPE);
    assert!(
        record.cookie().is_some(),
        "a 72-byte RawIDM always has a cookie"
    );
    assert!(!record.is_metadata());
    roundtrip(&record);
    // Change detection compares the payload in place with the cached record: the same bytes
    // must be no change.
    let parsed = ParsedPayload::parse(msg.payload).expect("it built a record");
    assert_eq!(
        diff::compare(&parsed, Some(&record)),
        Ok(Change::NoMajorChange),
        "a payload compared with its own record"
    );
    let _ = Snapshot::decode(&record);

    // The same record at a timestamp taken from the header, to exercise the RFC 3339 writer and
    // parser over the whole representable range (invalid combinations are simply skipped).
    let secs = i64::from(msg.header.seq as i32) * 100;
    let nanos = msg.header.pid % 1_000_000_000;
    let offset = (i32::from(msg.header.flags % 2879) - 1439) * 60;
    if let Some(ts) = Timestamp::with_offset(secs, nanos, offset) {
        let attrs: Vec<Option<&[u8]>> = record.attributes().collect();
        roundtrip(&ArchivalRecord::new(ts, record.raw_idm(), &attrs));
    }
}

/// JSON line encode → decode → encode: equal record, identical bytes, one line of valid JSON.
fn roundtrip(record: &ArchivalRecord) {
    let line = record.to_json_line();
    assert_eq!(line.last(), Some(&b'\n'), "line must end in a newline");
    assert!(
        !line[..line.len() - 1].contains(&b'\n'),
        "line has an inner newline"
    );
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&line) {
        panic!(
            "encoder wrote invalid JSON ({e}): {}",
            String::from_utf8_lossy(&line)
        );
    }
    let back = match ArchivalRecord::from_json(&line) {
        Ok(back) => back,
        Err(e) => panic!(
            "own line does not decode ({e}): {}",
            String::from_utf8_lossy(&line)
        ),
    };
    assert_eq!(&back, record, "decoded record differs");
    assert_eq!(back.to_json_line(), line, "second encoding differs");
}

/// What the record builder should produce, written independently of it from SPEC §3.6.
#[derive(Debug)]
struct Model<'a> {
    attributes: Vec<Option<&'a [u8]>>,
    dropped: u16,
}

fn model<'a>(msg: &Message<'a>) -> Result<Model<'a>, BuildError> {
    if msg.header.kind != 20 {
        return Err(BuildError::NotSockDiag(msg.header.kind));
    }
    let payload = msg.payload;
    if payload.len() < RAW_IDM_LEN {
        return Err(BuildError::Truncated(payload.len()));
    }
    let mut by_type: Vec<Option<&[u8]>> = vec![None; 39];
    let mut highest = 0;
    let mut dropped = 0u16;
    let mut at = RAW_IDM_LEN;
    // Each attribute: nla_len u16, nla_type u16, value, padded to 4; a tail under 4 bytes is
    // ignored.
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[at], payload[at + 1]]);
        let kind = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]);
        let remaining = payload.len() - at;
        if len < 4 || usize::from(len) > remaining {
            return Err(BuildError::BadAttributeLength {
                offset: at,
                len,
                remaining,
            });
        }
        let value = &payload[at + 4..at + usize::from(len)];
        // The array is sized by every type seen, dropped ones included: min(max type, 38) + 1.
        highest = highest.max(usize::from(kind.min(38)));
        if kind <= 38 {
            by_type[usize::from(kind)] = Some(value);
        } else {
            dropped = dropped.saturating_add(1);
        }
        at += usize::from(len).div_ceil(4) * 4;
    }
    by_type.truncate(highest + 1);
    Ok(Model {
        attributes: by_type,
        dropped,
    })
}
