//! The hash's share of the CPU per byte (issue 16), for `scripts/bench`: SHA-256 of
//! `--gib` GiB with the `sha2` crate the archiver uses, fed `--chunk` bytes at a time as
//! a download's body arrives. `scripts/bench` reads this process's CPU time (user +
//! system) and reports it per GiB beside the archiver's, so that "ours without the
//! hash" is a measured difference, not an estimate.
//!
//! ```text
//! cargo bench --bench sha256 -- --gib 4 --chunk 65536
//! ```

use sha2::{Digest as _, Sha256};

fn main() -> std::process::ExitCode {
    // `cargo test --all-targets` runs every bench with no arguments or with the test
    // filter: nothing to measure without a size (scripts/bench gives one).
    if !std::env::args().any(|a| a == "--gib") {
        eprintln!("sha256: no size given; nothing measured (see scripts/bench)");
        return std::process::ExitCode::SUCCESS;
    }
    let (mut gib, mut chunk) = (4u64, 64 * 1024usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref()) {
            ("--gib", Some(v)) => v.parse().map(|v| gib = v).map_err(|e| e.to_string()),
            ("--chunk", Some(v)) => v.parse().map(|v| chunk = v).map_err(|e| e.to_string()),
            ("--bench", _) => continue,
            (other, _) => Err(format!("unknown argument {other:?}, or no value")),
        };
        if let Err(e) = parsed {
            eprintln!("sha256: {arg}: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    if chunk == 0 {
        eprintln!("sha256: --chunk must be at least 1");
        return std::process::ExitCode::from(2);
    }
    // Bytes that do not repeat within a chunk (the hash does not care, the compiler might).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let buffer: Vec<u8> = (0..(1usize << 20).max(chunk))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let total = gib << 30;
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut offset = 0usize;
    while done < total {
        let n = chunk.min((total - done) as usize);
        if offset + n > buffer.len() {
            offset = 0;
        }
        hasher.update(&buffer[offset..offset + n]);
        offset += n;
        done += n as u64;
    }
    println!("{{\"bytes\": {total}, \"chunk\": {chunk}, \"sha256\": \"{}\"}}", hex::encode(hasher.finalize()));
    std::process::ExitCode::SUCCESS
}
