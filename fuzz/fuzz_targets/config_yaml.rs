//! Config YAML: any text parses to a config or to problems that each name a path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let env: [(&str, &str); 0] = [];
    if let Err(problems) = fabric_core::config::Config::from_yaml(text, env) {
        assert!(!problems.is_empty(), "an error without a problem");
        for p in problems {
            assert!(
                !p.path.is_empty(),
                "a problem naming no path: {}",
                p.message
            );
        }
    }
});
