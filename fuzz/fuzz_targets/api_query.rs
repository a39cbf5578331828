//! Query strings of the query API's requests (`/v1/connections?…`, `/v1/connections/{uuid}?…`):
//! any text is a query or a `BadParameter`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_info::api::{DetailQuery, ListQuery};

fuzz_target!(|query: &str| {
    let _ = ListQuery::parse(Some(query));
    let _ = DetailQuery::parse(Some(query));
});
