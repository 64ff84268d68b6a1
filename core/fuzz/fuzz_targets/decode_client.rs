//! Client side: a decoder with the version known from the start (MQTT 3.1.1 or 5, picked by
//! bit 3 of the first byte), so every packet type can come first. See `common` for the input
//! layout and the checks.

#![no_main]

mod common;

use iotcore_core::mqtt::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = common::Input::parse(data) else {
        return;
    };
    common::fuzz(&input, || {
        Decoder::with_version(input.version, input.max_packet_size)
    });
});
