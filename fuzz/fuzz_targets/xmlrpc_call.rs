#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() <= minisv_fuzz::targets::MAX_INPUT {
        minisv_fuzz::targets::xmlrpc_call(data);
    }
});
