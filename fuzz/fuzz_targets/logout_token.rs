#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealgate::fuzzing::logout_token(data);
});
