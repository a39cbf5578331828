//! A whole archive file, compressed or not, as the reader library, csvtool and the start-up
//! repair of unfinished archives see it: errors are `Err`s with bounded memory, never panics,
//! and the repair's "complete frames" prefix is always readable.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tcp_info::record::ArchiveReader;
use tcp_info::saver::complete_frames_len;

/// Records read before giving up on one input: enough to cross every line of a seed.
const MAX_RECORDS: usize = 100_000;

fn read_all(data: Vec<u8>, compressed: bool) -> Result<usize, String> {
    let reader = ArchiveReader::from_reader(Cursor::new(data), compressed, "fuzz")
        .map_err(|e| e.to_string())?;
    let mut count = 0;
    for record in reader.take(MAX_RECORDS) {
        record.map_err(|e| e.to_string())?;
        count += 1;
    }
    Ok(count)
}

fuzz_target!(|data: &[u8]| {
    let _ = read_all(data.to_vec(), true);
    let _ = read_all(data.to_vec(), false);
    let complete = complete_frames_len(data);
    assert!(complete <= data.len());
    // What the repair keeps must decompress without error (its lines may still be bad records).
    // Nothing kept means the file is removed, not read.
    if complete == 0 {
        return;
    }
    let mut decoder = zstd::stream::read::Decoder::new(Cursor::new(&data[..complete]))
        .expect("a decoder over memory");
    std::io::copy(&mut decoder, &mut std::io::sink())
        .expect("the complete frames decompress");
});
