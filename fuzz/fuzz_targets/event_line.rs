//! One line from the event socket, as a client library decodes it: garbage is an `Err`, and a
//! decoded Open or Close encodes back to a line that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::events::{Decoded, FlowEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = FlowEvent::decode(data) else {
        return;
    };
    if let Decoded::Event(event) = decoded {
        let line = event.to_line();
        match FlowEvent::decode(&line) {
            Ok(Decoded::Event(again)) => assert_eq!(again, event, "round trip of {line:?}"),
            other => panic!("our own line {line:?} decoded as {other:?}"),
        }
    }
});
