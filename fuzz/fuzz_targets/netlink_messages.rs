//! A netlink receive buffer, as the kernel (or a capture file) hands it over: every framing,
//! header and attribute error must be an `Err`, never a panic, and every sock_diag message that
//! builds a record must survive the archive's JSON round trip and compare unchanged with itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::diff::{self, Change};
use tcp_info::record::{ArchivalRecord, ParsedPayload, Timestamp};
use tcp_info::snapshot::Snapshot;
use tcp_info::wire::inet_diag::InetDiagMsg;
use tcp_info::wire::netlink::{Messages, SOCK_DIAG_BY_FAMILY, StreamReader};

fuzz_target!(|data: &[u8]| {
    let Some(stamp) = Timestamp::from_unix(1_700_000_000, 123_456_789) else {
        return;
    };
    let mut previous: Option<ArchivalRecord> = None;
    for message in Messages::new(data) {
        let Ok(message) = message else { break };
        let _ = message.errno();
        if message.header.kind != SOCK_DIAG_BY_FAMILY {
            continue;
        }
        if let Ok(idm) = InetDiagMsg::new(message.payload) {
            let _ = (idm.src(), idm.dst(), idm.cookie(), idm.state());
        }
        let Ok(parsed) = ParsedPayload::parse(message.payload) else {
            continue;
        };
        let record = parsed.to_record(stamp);
        // The record built from a payload is the payload, as change detection sees it.
        assert_eq!(
            diff::compare(&parsed, Some(&record)),
            Ok(Change::NoMajorChange)
        );
        let line = record.to_json_line();
        let decoded = ArchivalRecord::from_json(&line).expect("our own line decodes");
        assert_eq!(decoded, record, "JSON round trip of {line:?}");
        let _ = Snapshot::decode(&record);
        if let Some(previous) = &previous {
            let _ = diff::compare(&record, Some(previous));
        }
        previous = Some(record);
    }
    // The same bytes as a capture file (the format of upstream's raw netlink captures).
    for message in StreamReader::new(data).take(10_000) {
        if message.is_err() {
            break;
        }
    }
});
