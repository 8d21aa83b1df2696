//! Job payload validation: any JSON as the payload of every built-in kind, and any JSON as a
//! whole job; an error names its field, nothing panics.
#![no_main]

use fabric_core::NewJob;
use fabric_engine::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let registry = Registry::builtin();
    for kind in registry.kinds() {
        if let Some(h) = registry.get(&kind) {
            let _ = h.validate(&payload);
            let _ = h.timeout(&payload);
        }
    }
    if let Ok(job) = serde_json::from_value::<NewJob>(payload) {
        if let Err(e) = job.validate() {
            assert!(e.to_string().starts_with("invalid "), "{e}");
        }
    }
});
