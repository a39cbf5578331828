//! The kernel's BTF as the eBPF loader reads it for `struct sock` field offsets: any bytes give
//! offsets or an error, never a panic, an endless walk or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::ebpf::btf::Btf;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::parse(data) {
        let _ = btf.offsets();
        let _ = btf.offset("sock", &["__sk_common", "skc_cookie"]);
    }
});
