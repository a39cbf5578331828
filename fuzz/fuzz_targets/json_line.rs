//! Arbitrary bytes as one archive line: decoding either fails cleanly or yields a record whose
//! canonical encoding is one line of valid JSON that decodes back to the same record and encodes
//! to the same bytes again; its typed decoding and its CSV row (csvtool, the query API) never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::csv;
use tcp_info::record::ArchivalRecord;
use tcp_info::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = ArchivalRecord::from_json(data) else {
        return;
    };
    let first = record.to_json_line();
    assert_eq!(first.last(), Some(&b'\n'), "line must end in a newline");
    assert!(
        !first[..first.len() - 1].contains(&b'\n'),
        "line has an inner newline"
    );
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&first) {
        panic!(
            "encoder wrote invalid JSON ({e}): {}",
            String::from_utf8_lossy(&first)
        );
    }
    let back = match ArchivalRecord::from_json(&first) {
        Ok(back) => back,
        Err(e) => panic!(
            "canonical line does not decode ({e}): {}",
            String::from_utf8_lossy(&first)
        ),
    };
    assert_eq!(back, record, "decoded record differs");
    let second = back.to_json_line();
    assert_eq!(
        second,
        first,
        "second encoding differs:\n{}\n{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&second)
    );
    // Without its newline, and with `\r\n`, the line decodes the same.
    let bare = &first[..first.len() - 1];
    assert!(ArchivalRecord::from_json(bare).is_ok_and(|r| r == record));
    let mut crlf = bare.to_vec();
    crlf.extend_from_slice(b"\r\n");
    assert!(ArchivalRecord::from_json(&crlf).is_ok_and(|r| r == record));
    if let Ok(snapshot) = Snapshot::decode(&record) {
        let mut row = String::new();
        csv::write_row(&mut row, &snapshot);
        let _ = csv::named_cells(&snapshot);
    }
});
