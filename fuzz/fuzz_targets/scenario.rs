//! Custom scenario JSON: any bytes parse to a scenario or to an error with its reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err((field, why)) = fabric_sim::Scenario::from_custom_slice(data) {
        assert!(
            !why.is_empty(),
            "an error without a reason (field {field:?})"
        );
    }
});
