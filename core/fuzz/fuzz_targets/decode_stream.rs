//! Server side: a fresh connection's decoder (version unknown until the CONNECT) fed
//! arbitrary bytes in arbitrary chunks. See `common` for the input layout and the checks.

#![no_main]

mod common;

use iotcore_core::mqtt::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = common::Input::parse(data) else {
        return;
    };
    common::fuzz(&input, || Decoder::new(input.max_packet_size));
});
