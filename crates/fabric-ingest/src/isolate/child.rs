//! The extractor child: the process the pool spawns (`fabric __extractor`). It caps its own
//! address space (`RLIMIT_AS`), keeps its standard output for the protocol alone (anything a
//! parser prints goes to standard error), and answers requests one at a time, turning a
//! parser panic into `parse_error` and an answer over the output cap into
//! `resource_exhausted`. Death is left to the pool to classify.
//!
//! Test hooks: with `FABRIC_EXTRACTOR_TEST_HOOKS=1` in its environment (never set it in
//! production), a file whose first 512 bytes hold `fabric-extractor-test-hook:NAME` makes the
//! child misbehave on purpose: `sleep` (sleeps an hour: a timeout), `alloc` (allocates until
//! the memory cap stops it; refused without a cap), `allocN` (allocates and touches N MiB,
//! then parses the file as usual), `stack` (recurses until the stack overflows), `abort`
//! (aborts), `panic` (panics). Without the variable the text is content.

use std::io::{BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::ExitCode;

use super::wire::{self, ExtractRequest, Response, HELLO};
use crate::error::ExtractError;
use crate::untrusted::extract_untrusted;

/// The variable that enables the test hooks.
pub const TEST_HOOKS_ENV: &str = "FABRIC_EXTRACTOR_TEST_HOOKS";

/// The marker of a test hook in a file's first bytes.
pub const TEST_HOOK_MARK: &str = "fabric-extractor-test-hook:";

/// The child's caps, as the pool passes them on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildOptions {
    /// `RLIMIT_AS` in bytes; 0 leaves the address space unlimited.
    pub memory_bytes: u64,
    /// Largest response, in bytes.
    pub output_cap_bytes: u64,
}

/// Largest file body a request may carry (the ingest size cap is far below).
const MAX_BODY_BYTES: u64 = 1 << 32;

/// The address space this process maps now (`VmSize`), in bytes.
fn address_space() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sets `RLIMIT_AS`. Refuses a cap the process is already over: new mappings would all fail
/// while memory reserved before the cap stays usable, so the cap would mean nothing (an
/// allocator that reserves a large arena at start-up does this; the pool turns mimalloc's
/// off).
fn set_memory_cap(bytes: u64) -> Result<(), String> {
    use nix::sys::resource::{setrlimit, Resource};
    if bytes == 0 {
        return Ok(());
    }
    if let Some(now) = address_space().filter(|&now| now >= bytes) {
        return Err(format!(
            "its address space at start-up ({} MiB) is already over the memory cap ({} MiB)",
            now >> 20,
            bytes >> 20
        ));
    }
    setrlimit(Resource::RLIMIT_AS, bytes, bytes)
        .map_err(|e| format!("cannot set RLIMIT_AS to {bytes} bytes: {e}"))
}

/// The hook a request asks for, when hooks are enabled.
fn test_hook(req: &ExtractRequest) -> Option<String> {
    if std::env::var(TEST_HOOKS_ENV).as_deref() != Ok("1") {
        return None;
    }
    let head = String::from_utf8_lossy(&req.bytes[..req.bytes.len().min(512)]);
    let at = head.find(TEST_HOOK_MARK)? + TEST_HOOK_MARK.len();
    let name: String = head[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    Some(name)
}

#[allow(unconditional_recursion)]
fn overflow(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    overflow(depth + 1) + pad[3]
}

fn run_hook(name: &str, opts: &ChildOptions) {
    match name {
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        "alloc" if opts.memory_bytes > 0 => {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hog);
            }
        }
        n if n.starts_with("alloc") => {
            let mib: usize = n["alloc".len()..].parse().unwrap_or(0);
            let hog: Vec<Vec<u8>> = (0..mib).map(|_| vec![1u8; 1 << 20]).collect();
            std::hint::black_box(&hog);
        }
        "stack" => {
            std::hint::black_box(overflow(0));
        }
        "abort" => std::process::abort(),
        "panic" => panic!("test hook: panic"),
        _ => {}
    }
}

fn answer(req: &ExtractRequest, opts: &ChildOptions) -> Response {
    let run = || {
        if let Some(hook) = test_hook(req) {
            run_hook(&hook, opts);
        }
        extract_untrusted(
            req.doc_type,
            &req.source,
            Path::new(&req.path),
            &req.bytes,
            req.meta.clone(),
            &req.limits,
        )
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(ExtractError::Parse(format!("the parser panicked: {what}")))
        }
    }
}

/// The serialized answer, or a `resource_exhausted` one in its place when it is over the cap.
fn encode(resp: &Response, cap: u64) -> Vec<u8> {
    let body = serde_json::to_vec(resp).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::Err(ExtractError::Parse(format!(
            "cannot encode the document: {e}"
        ))))
        .unwrap_or_default()
    });
    if body.len() as u64 <= cap {
        return body;
    }
    let over: Response = Err(ExtractError::ResourceExhausted(format!(
        "extracted document of {} bytes exceeds the output cap of {cap} bytes",
        body.len()
    )));
    serde_json::to_vec(&over).unwrap_or_default()
}

/// Exits once the parent is gone (this process re-parented), so that a child busy on a
/// file does not outlive a daemon killed with SIGKILL; an idle child sees its input close.
fn watch_parent() {
    let parent = nix::unistd::getppid();
    let watch = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            if nix::unistd::getppid() != parent {
                std::process::exit(4);
            }
        });
    if let Err(e) = watch {
        eprintln!("fabric extractor: cannot watch its parent: {e}");
    }
}

/// Runs the extractor child until its input closes; the exit code is 0 then, 3 when the caps
/// cannot be set or the protocol pipe fails, 4 when its parent died.
pub fn child_main(opts: ChildOptions) -> ExitCode {
    if let Err(e) = set_memory_cap(opts.memory_bytes) {
        eprintln!("fabric extractor: {e}");
        return ExitCode::from(3);
    }
    // The protocol gets its own copy of standard output; fd 1 then points at standard
    // error, so a parser's stray print cannot corrupt a frame.
    let proto = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("fabric extractor: cannot keep standard output: {e}");
            return ExitCode::from(3);
        }
    };
    if let Err(e) = nix::unistd::dup2(2, 1) {
        eprintln!("fabric extractor: cannot redirect standard output: {e}");
        return ExitCode::from(3);
    }
    watch_parent();
    let mut out = BufWriter::new(proto);
    let mut input = BufReader::new(std::io::stdin().lock());
    if out.write_all(HELLO).and_then(|()| out.flush()).is_err() {
        return ExitCode::from(3);
    }
    loop {
        let req = match wire::read_request(&mut input, MAX_BODY_BYTES) {
            Ok(Some(r)) => r,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fabric extractor: bad request: {e}");
                return ExitCode::from(3);
            }
        };
        let resp = answer(&req, &opts);
        drop(req);
        let body = encode(&resp, opts.output_cap_bytes);
        drop(resp);
        if let Err(e) = wire::write_response(&mut out, &body) {
            eprintln!("fabric extractor: cannot answer: {e}");
            return ExitCode::from(3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::doc::DocType;

    #[test]
    fn answers_over_the_cap_are_resource_exhausted() {
        let req = ExtractRequest {
            doc_type: DocType::Html,
            source: "s".into(),
            path: "a.html".into(),
            meta: Default::default(),
            limits: Default::default(),
            bytes: format!("<p>{}</p>", "word ".repeat(2000)).into_bytes(),
        };
        let opts = ChildOptions {
            memory_bytes: 0,
            output_cap_bytes: 1000,
        };
        let resp = answer(&req, &opts);
        assert!(resp.is_ok());
        let back: Response = serde_json::from_slice(&encode(&resp, 1000)).expect("json");
        assert!(
            matches!(back, Err(ExtractError::ResourceExhausted(ref m)) if m.contains("output cap")),
            "{back:?}"
        );
        let back: Response = serde_json::from_slice(&encode(&resp, 1 << 20)).expect("json");
        assert_eq!(back, resp);
    }

    #[test]
    fn hooks_need_the_variable() {
        let req = ExtractRequest {
            doc_type: DocType::Html,
            source: "s".into(),
            path: "a.html".into(),
            meta: Default::default(),
            limits: Default::default(),
            bytes: b"<!-- fabric-extractor-test-hook:panic -->".to_vec(),
        };
        // Not set in the unit tests' environment: the marker is plain content.
        assert_eq!(test_hook(&req), None);
    }
}
