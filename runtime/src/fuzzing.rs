//! Entry points for the fuzz targets in `runtime/fuzz` (feature `fuzzing`), also run by the
//! unit test that replays their kept corpus, so that an input that once crashed stays a test.
//! Not part of the API.

use bytes::Bytes;
use futures_util::FutureExt;

use crate::wire::{FrameReader, Message, Received, json_value_count, split_frames};

/// Feeds `data` to everything that parses bytes from a peer: the frame reader (as a stream of
/// frames), the envelope decoders the serving and calling sides use (on each frame body, and
/// on `data` as one body), the JSON value counter and the frame splitter of message links.
/// None may panic; the reader hands out no frame beyond its limit; what decodes re-encodes to
/// the same message.
pub fn frames(data: &[u8]) {
    const MAX_FRAME: u32 = 64 * 1024;
    // A byte slice is always ready, so every read completes on its first poll.
    let mut reader = FrameReader::new(data, MAX_FRAME);
    while let Some(Ok(Some(body))) = reader.next_frame().now_or_never() {
        assert!(body.len() <= MAX_FRAME as usize);
        envelope(&body);
    }
    envelope(&Bytes::copy_from_slice(data));
    for body in split_frames(Bytes::copy_from_slice(data)) {
        envelope(&body);
    }
}

fn envelope(body: &Bytes) {
    let _ = json_value_count(body);
    let _ = Received::decode(body);
    let _ = Received::decode_request_limited(body, 1_000);
    if let Ok(message) = Message::decode(body) {
        let again =
            Message::decode(&message.to_json_bytes()).expect("a re-encoded message decodes");
        assert_eq!(again, message, "a message survives encoding");
    }
}

#[cfg(test)]
mod tests {
    /// Replays every input of the kept fuzz corpus (`runtime/fuzz/corpus/frames`).
    #[test]
    fn the_fuzz_corpus_replays_without_a_crash() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frames");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus directory") {
            let path = entry.expect("a corpus entry").path();
            super::frames(&std::fs::read(&path).expect("a corpus file"));
            inputs += 1;
        }
        assert!(inputs >= 10, "only {inputs} inputs in {}", dir.display());
    }
}
