//! Checkpoint JSON: any bytes load to a checkpoint or to an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fabric_sim::checkpoint::parse_checkpoint(data, std::path::Path::new("cp.json"));
});
