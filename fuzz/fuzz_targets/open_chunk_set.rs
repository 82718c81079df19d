#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealgate::internal::open_chunk_set(data);
});
