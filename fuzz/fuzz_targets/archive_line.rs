//! One archive line, as csvtool, the query API and the ETL checks read them: anything that is
//! not a record is an `Err`; anything that is must decode to the same record again after we
//! encode it, and its typed decoding and CSV row must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::csv;
use tcp_info::record::ArchivalRecord;
use tcp_info::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = ArchivalRecord::from_json(data) else {
        return;
    };
    let line = record.to_json_line();
    let again = ArchivalRecord::from_json(&line).expect("our own encoding decodes");
    assert_eq!(again, record, "round trip through {line:?}");
    assert_eq!(again.to_json_line(), line, "encoding is canonical");
    if let Ok(snapshot) = Snapshot::decode(&record) {
        let mut row = String::new();
        csv::write_row(&mut row, &snapshot);
        let _ = csv::named_cells(&snapshot);
    }
});
