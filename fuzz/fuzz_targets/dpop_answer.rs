#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealgate::internal::dpop_answer(data);
});
