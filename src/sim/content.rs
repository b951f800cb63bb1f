//! Deterministic file contents: the bytes of a recording (or of its audio track) are a
//! pure function of its id, its kind and its size, so anyone can recompute the expected
//! SHA-256 without storing files, and a download of several GiB streams from a fixed
//! 4 MiB table.
//!
//! The bytes of block `b` (64 KiB) are 64 KiB of a fixed pseudo-random table read at a
//! block-dependent offset, XOR-ed word by word with a block-dependent 64-bit word; both
//! are derived from the SHA-256 of the id and kind. MP4 content starts with a valid
//! `ftyp` box followed by an `mdat` box that spans the rest of the file; audio starts
//! with an `ftyp` box of brand `M4A `. Transcripts are small WebVTT texts.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Size of the chunks a download stream produces.
pub const CHUNK_SIZE: usize = 256 << 10;
/// Unit of the per-block mixing.
const BLOCK: usize = 64 << 10;
const BLOCK_WORDS: usize = BLOCK / 8;
/// The shared pseudo-random table: 4 MiB.
const TABLE_WORDS: usize = (4 << 20) / 8;

/// Which file of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// The MP4/ARF file (`recordingDownloadLink`).
    Recording,
    /// The audio track (`audioDownloadLink`, `mediaType=1`).
    Audio,
    /// The transcript (`transcriptDownloadLink`, `mediaType=2`).
    Transcript,
}

impl MediaKind {
    /// The short name used in tickets and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::Audio => "audio",
            Self::Transcript => "transcript",
        }
    }
}

/// One file's content: a generator that can fill any byte range.
#[derive(Debug, Clone)]
pub struct Content {
    key: u64,
    len: u64,
    header: Vec<u8>,
    /// Fixed text (transcripts); when set, `key` is unused.
    text: Option<Bytes>,
    content_type: &'static str,
}

impl Content {
    /// The main file of recording `id` in `format` (`MP4`, `ARF`, `UPLOADED`...), `size` bytes.
    pub fn recording(id: &str, format: &str, size: u64) -> Self {
        let (header, content_type) = match format {
            "MP4" => (mp4_header(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"], size), "video/mp4"),
            "ARF" => (Vec::new(), "application/x-arf"),
            _ => (Vec::new(), "application/octet-stream"),
        };
        Self { key: derive_key(id, MediaKind::Recording), len: size, header, text: None, content_type }
    }

    /// The audio track of recording `id` whose main file is `recording_size` bytes.
    pub fn audio(id: &str, recording_size: u64) -> Self {
        let len = audio_size(recording_size);
        let header = mp4_header(b"M4A ", &[b"M4A ", b"mp42", b"isom", b"iso2"], len);
        Self { key: derive_key(id, MediaKind::Audio), len, header, text: None, content_type: "audio/mp4" }
    }

    /// The WebVTT transcript of recording `id` lasting `duration_seconds`.
    pub fn transcript(id: &str, duration_seconds: u64) -> Self {
        let text = Bytes::from(transcript_text(id, duration_seconds));
        Self { key: 0, len: text.len() as u64, header: Vec::new(), text: Some(text), content_type: "text/vtt" }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The media type served with it.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// Writes bytes `offset..offset + out.len()` of the file into `out` (the caller keeps
    /// the range within [`Content::len`]).
    pub fn fill(&self, offset: u64, out: &mut [u8]) {
        if let Some(text) = &self.text {
            let start = offset as usize;
            out.copy_from_slice(&text[start..start + out.len()]);
            return;
        }
        let table = table();
        let mut pos = offset;
        let mut written = 0usize;
        while written < out.len() {
            let block = pos / BLOCK as u64;
            let in_block = (pos % BLOCK as u64) as usize;
            let n = (BLOCK - in_block).min(out.len() - written);
            let (word, base) = self.block_params(block);
            let dst = &mut out[written..written + n];
            if in_block.is_multiple_of(8) {
                let words = &table[base + in_block / 8..base + BLOCK_WORDS];
                let mut chunks = dst.chunks_exact_mut(8);
                for (c, w) in (&mut chunks).zip(words) {
                    c.copy_from_slice(&(w ^ word).to_le_bytes());
                }
                let rem = chunks.into_remainder();
                if !rem.is_empty() {
                    let last = (words[n / 8] ^ word).to_le_bytes();
                    let len = rem.len();
                    rem.copy_from_slice(&last[..len]);
                }
            } else {
                for (i, byte) in dst.iter_mut().enumerate() {
                    let p = in_block + i;
                    *byte = (table[base + p / 8] ^ word).to_le_bytes()[p % 8];
                }
            }
            pos += n as u64;
            written += n;
        }
        // The header overlays the first bytes.
        let header_len = self.header.len() as u64;
        if offset < header_len {
            let start = offset as usize;
            let end = (header_len.min(offset + out.len() as u64)) as usize;
            out[..end - start].copy_from_slice(&self.header[start..end]);
        }
    }

    /// The chunk of at most `max` bytes starting at `offset` (empty past the end).
    pub fn chunk(&self, offset: u64, max: usize) -> Bytes {
        let n = (self.len.saturating_sub(offset)).min(max as u64) as usize;
        if let Some(text) = &self.text {
            let start = offset as usize;
            return text.slice(start..start + n);
        }
        let mut buf = BytesMut::zeroed(n);
        self.fill(offset, &mut buf);
        buf.freeze()
    }

    /// The whole file in memory (for small files and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len as usize];
        self.fill(0, &mut out);
        out
    }

    /// Lowercase hex SHA-256 of the whole file, computed chunk by chunk.
    pub fn sha256_hex(&self) -> String {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut offset = 0u64;
        while offset < self.len {
            let n = (self.len - offset).min(CHUNK_SIZE as u64) as usize;
            self.fill(offset, &mut buf[..n]);
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        hex::encode(hasher.finalize())
    }

    fn block_params(&self, block: u64) -> (u64, usize) {
        let word = splitmix64(self.key ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let base = (splitmix64(word) % (TABLE_WORDS - BLOCK_WORDS + 1) as u64) as usize;
        (word, base)
    }
}

/// Size of the audio track of a recording of `recording_size` bytes.
pub fn audio_size(recording_size: u64) -> u64 {
    (recording_size / 8).max(16 << 10)
}

fn derive_key(id: &str, kind: MediaKind) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"webex-sim-content\0");
    hasher.update(kind.as_str().as_bytes());
    hasher.update(b"\0");
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// `ftyp` (32 bytes) then, when there is room, an `mdat` header (16 bytes, 64-bit size)
/// covering the rest of the file.
fn mp4_header(brand: &[u8; 4], compatible: &[&[u8; 4]; 4], total: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(48);
    h.extend_from_slice(&32u32.to_be_bytes());
    h.extend_from_slice(b"ftyp");
    h.extend_from_slice(brand);
    h.extend_from_slice(&0x200u32.to_be_bytes());
    for c in compatible {
        h.extend_from_slice(*c);
    }
    if total >= 48 {
        h.extend_from_slice(&1u32.to_be_bytes());
        h.extend_from_slice(b"mdat");
        h.extend_from_slice(&(total - 32).to_be_bytes());
    }
    h.truncate(total.min(h.len() as u64) as usize);
    h
}

fn transcript_text(id: &str, duration_seconds: u64) -> String {
    const LINES: [&str; 6] = [
        "Good morning, everyone.",
        "Let's go through the agenda.",
        "The numbers for this quarter are in the shared folder.",
        "Any questions before we move on?",
        "I'll send the minutes after the call.",
        "Thanks, talk to you next week.",
    ];
    let mut state = derive_key(id, MediaKind::Transcript);
    let mut text = String::from("WEBVTT\n\n");
    let cues = (duration_seconds / 30).clamp(1, 400);
    for i in 0..cues {
        state = splitmix64(state);
        let start = i * 30;
        let line = LINES[(state % LINES.len() as u64) as usize];
        text.push_str(&format!("{}\n{} --> {}\n{}\n\n", i + 1, vtt_time(start), vtt_time(start + 29), line));
    }
    text
}

fn vtt_time(seconds: u64) -> String {
    format!("{:02}:{:02}:{:02}.000", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

fn table() -> &'static [u64] {
    static TABLE: OnceLock<Box<[u64]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut state = 0x05EE_D0F7_AB1E_u64;
        (0..TABLE_WORDS)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                splitmix64(state)
            })
            .collect()
    })
}

/// SplitMix64 finalizer: a fast, well-mixed 64-bit hash.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_range_matches_the_whole() {
        let c = Content::recording("abc", "MP4", 300_001);
        let whole = c.to_vec();
        for (start, len) in [(0usize, 7usize), (3, 100), (65_530, 20), (131_071, 65_538), (299_990, 11)] {
            let mut part = vec![0u8; len];
            c.fill(start as u64, &mut part);
            assert_eq!(part, whole[start..start + len], "range {start}+{len}");
        }
        assert_eq!(&whole[4..8], b"ftyp");
        assert_eq!(&whole[36..40], b"mdat");
    }

    #[test]
    fn content_depends_on_id_and_kind() {
        let a = Content::recording("a", "ARF", 4096).to_vec();
        let b = Content::recording("b", "ARF", 4096).to_vec();
        assert_ne!(a, b);
        assert_eq!(a, Content::recording("a", "ARF", 4096).to_vec());
        assert!(Content::transcript("a", 600).to_vec().starts_with(b"WEBVTT"));
    }
}
