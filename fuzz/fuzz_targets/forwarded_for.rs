#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sealgate::internal::forwarded_for(data);
});
