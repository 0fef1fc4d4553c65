//! The GGUF reader's memory is bounded by what the file holds, not by what
//! its header claims: peak heap while parsing hostile files is measured (a
//! counting global allocator) against the documented bound, and the two
//! reproductions that used to abort the process run in a child whose
//! address space is limited to 2 GiB, so a reintroduced reservation fails
//! here even on a large machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tilejit::gguf::{Gguf, GgufError, GgufLimits, MAX_KEPT_PER_FILE_BYTE};

/// System's allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to System unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as if old and new coexisted: realloc may copy.
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The documented bound (tilejit::gguf::GgufLimits): 3 x min(limit, 8 x
/// file size) + 64 KiB.
fn bound(file_len: usize, limits: GgufLimits) -> usize {
    let kept = limits.max_metadata_bytes.min(MAX_KEPT_PER_FILE_BYTE * file_len as u64);
    3 * kept as usize + (64 << 10)
}

/// Parses `bytes` (already in memory, so the file is not counted) and
/// returns (result, peak heap of the parse, milliseconds).
fn measured(bytes: &Arc<[u8]>, limits: GgufLimits) -> (Result<Gguf, GgufError>, usize, f64) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let t = Instant::now();
    let r = Gguf::parse_with(bytes.clone(), limits);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    (r, PEAK.load(Ordering::Relaxed) - start, ms)
}

/// A GGUF v3 header, then `body`, zero-padded to `len` bytes.
fn file(n_tensors: u64, n_kv: u64, body: &[u8], len: usize) -> Arc<[u8]> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(len.max(b.len()), 0);
    b.into()
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

/// Reproduction 1 (issue 11): `n_kv = 15486659` padded with zeros to 192
/// MiB once made the reader reserve 1.1 GB before reading a pair.
fn huge_count_file() -> Arc<[u8]> {
    file(0, 15_486_659, &[], 192 << 20)
}

/// Reproduction 2: one 98 MiB key of 0x1F bytes (a control character,
/// six bytes once escaped), with a u8 value; `twice` repeats the pair so
/// that the file is rejected as a duplicate key.
fn huge_key_file(twice: bool) -> Arc<[u8]> {
    let key = vec![0x1Fu8; 98 << 20];
    let mut body = Vec::new();
    for _ in 0..if twice { 2 } else { 1 } {
        string(&mut body, &key);
        body.extend_from_slice(&0u32.to_le_bytes()); // u8
        body.push(7);
    }
    file(0, if twice { 2 } else { 1 }, &body, 0)
}

fn check_message(e: &GgufError) {
    let msg = e.to_string();
    assert!(msg.len() < 4096, "{} bytes of message", msg.len());
    eprintln!("  error ({} bytes): {}", msg.len(), &msg[..msg.len().min(300)]);
}

#[test]
fn hostile_files_stay_within_the_documented_heap_bound() {
    let limits = GgufLimits::default();
    let mut cases: Vec<(&str, Arc<[u8]>)> = vec![
        ("count at its bound, zero padding", huge_count_file()),
        ("huge key", huge_key_file(false)),
        ("huge key twice", huge_key_file(true)),
    ];
    // Distinct 4-byte keys with u8 values up to 64 MiB: the metadata count
    // at its bound with every pair real (OverLimit at the default limit).
    let mut body = Vec::new();
    let mut n = 0u64;
    while body.len() < 64 << 20 {
        let key: Vec<u8> = (0..4).map(|i| b'0' + (n >> (6 * i) & 63) as u8).collect();
        string(&mut body, &key);
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(1);
        n += 1;
    }
    cases.push(("many real pairs", file(0, n, &body, 0)));
    // One array of 8M empty strings (64 MiB of lengths).
    let mut body = Vec::new();
    string(&mut body, b"strings");
    body.extend_from_slice(&9u32.to_le_bytes()); // array
    body.extend_from_slice(&8u32.to_le_bytes()); // of strings
    body.extend_from_slice(&(8u64 << 20).to_le_bytes());
    body.resize(body.len() + (64 << 20), 0);
    cases.push(("huge string array", file(0, 1, &body, 0)));
    // Arrays nested 8 deep (the most allowed), 1M empty arrays innermost.
    let mut body = Vec::new();
    string(&mut body, b"nested");
    body.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..6 {
        body.extend_from_slice(&9u32.to_le_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
    }
    body.extend_from_slice(&9u32.to_le_bytes());
    body.extend_from_slice(&(1u64 << 20).to_le_bytes());
    for _ in 0..1 << 20 {
        body.extend_from_slice(&0u32.to_le_bytes()); // empty u8 arrays
        body.extend_from_slice(&0u64.to_le_bytes());
    }
    cases.push(("deep nesting", file(0, 1, &body, 0)));

    for (name, bytes) in &cases {
        for limits in [limits, GgufLimits { max_metadata_bytes: u64::MAX }] {
            let (r, peak, ms) = measured(bytes, limits);
            let b = bound(bytes.len(), limits);
            eprintln!(
                "{name}: {} MiB file, limit {}, peak heap {:.1} MiB (bound {:.1} MiB), {ms:.1} ms, {}",
                bytes.len() >> 20,
                limits.max_metadata_bytes,
                peak as f64 / (1 << 20) as f64,
                b as f64 / (1 << 20) as f64,
                if r.is_ok() { "accepted" } else { "rejected" }
            );
            if let Err(e) = &r {
                check_message(e);
            }
            assert!(peak <= b, "{name}: peak heap {peak} over the bound {b}");
        }
    }
}

/// Runs `child` of this binary with its address space limited to 2 GiB.
fn run_limited(child: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--ignored", "--nocapture", "--test-threads", "1"])
        .env("TILEJIT_GGUF_RLIMIT_CHILD", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{child} under a 2 GiB address space:\n{text}");
    text
}

#[test]
fn the_two_reproductions_return_typed_errors_under_a_2_gib_address_space() {
    eprintln!("{}", run_limited("child_reproductions_under_rlimit"));
}

#[test]
#[ignore = "run by the_two_reproductions_return_typed_errors_under_a_2_gib_address_space"]
fn child_reproductions_under_rlimit() {
    assert!(std::env::var_os("TILEJIT_GGUF_RLIMIT_CHILD").is_some(), "only as a child: it limits its address space");
    let limit = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
    // SAFETY: setrlimit reads one struct; lowering the limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    let bytes = huge_count_file();
    let t = Instant::now();
    let e = Gguf::parse(bytes).err().expect("a zero-padded count is rejected");
    eprintln!("count 15486659 in 192 MiB: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    check_message(&e);
    assert!(matches!(e, GgufError::DuplicateKey { .. }), "{e}");
    let bytes = huge_key_file(true);
    let t = Instant::now();
    let e = Gguf::parse(bytes).err().expect("a duplicate huge key is rejected");
    eprintln!("98 MiB key twice: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    check_message(&e);
    assert!(matches!(e, GgufError::DuplicateKey { .. }), "{e}");
    let bytes = huge_key_file(false);
    let t = Instant::now();
    let g = Gguf::parse(bytes).expect("one huge key is a valid file");
    eprintln!("98 MiB key accepted: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    assert_eq!(g.metadata()[0].0.len(), 98 << 20);
}
