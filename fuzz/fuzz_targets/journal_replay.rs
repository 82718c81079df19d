#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealgate::fuzzing::journal_replay(data);
});
