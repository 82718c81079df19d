#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealgate::fuzzing::callback_query(data);
});
