//! Follows a running daemon's event socket and prints each event, decoding lines the way the Go
//! sidecars do (SPEC §7.4): an unknown `Event` is reported and skipped, an undecodable line is
//! fatal.
//!
//! ```text
//! cargo run -p tcp-info --example events_tail -- /var/local/tcpinfo/eventsocket/tcpevents.sock
//! ```

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    use std::process::ExitCode;
    use tcp_info::events::{Decoded, EventKind, FlowEvent};

    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: events_tail <event socket path>");
        return ExitCode::from(2);
    };
    let stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("cannot connect to {}: {e}", path.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                eprintln!("the server closed the connection");
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("read failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        if !line.ends_with(b"\n") {
            eprintln!(
                "partial line at end of stream: {}",
                String::from_utf8_lossy(&line)
            );
            return ExitCode::FAILURE;
        }
        match FlowEvent::decode(&line) {
            Ok(Decoded::Event(event)) => match (event.kind, &event.id) {
                (EventKind::Open, Some(id)) => println!(
                    "open  {} {} {}:{} -> {}:{} if={} cookie={:X}",
                    event.timestamp,
                    event.uuid,
                    id.src_ip,
                    id.sport,
                    id.dst_ip,
                    id.dport,
                    id.interface,
                    id.cookie_u64()
                ),
                (EventKind::Open, None) => {
                    println!("open  {} {} (no ID)", event.timestamp, event.uuid);
                }
                (EventKind::Close, _) => println!("close {} {}", event.timestamp, event.uuid),
            },
            Ok(Decoded::Unknown(unknown)) => {
                eprintln!(
                    "ignoring unknown event {} for {}",
                    unknown.event, unknown.uuid
                );
            }
            Err(e) => {
                eprintln!("{e}: {}", String::from_utf8_lossy(&line));
                return ExitCode::FAILURE;
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the event socket exists on Linux only");
}
