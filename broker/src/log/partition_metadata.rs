//! `partition.metadata`: the topic id a partition directory belongs to (KIP-516), in Kafka's
//! format — `version: 0` and `topic_id: <id>` lines, the id as Kafka prints a `Uuid` (URL-safe
//! base64 without padding, 22 characters). Written when a partition's log is created, so a
//! directory left by a deleted topic cannot pass for the partition of a new topic of the same
//! name. Also the name a retired partition directory gets before it is removed:
//! `<topic>-<partition>.<32 hex digits>-delete` (Kafka's form, capped at 255 bytes).

use std::io;
use std::path::Path;

use disk_model::{OpenMode, Storage};

use super::epoch::write_atomically;
use super::TopicPartition;

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// The suffix of a retired partition directory (removed in the background).
pub const DELETE_DIR_SUFFIX: &str = "-delete";
/// Bytes of `partition.metadata` read at most (the real file is about 40).
const FILE_BYTES_MAX: usize = 1024;
/// A directory name's limit on common file systems (Kafka caps retired names to it).
const DIR_NAME_BYTES_MAX: usize = 255;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A topic id as Kafka prints it (`Uuid.toString`: URL-safe base64, no padding).
pub fn id_to_base64(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The inverse of [`id_to_base64`]; `None` for anything but 22 URL-safe base64 characters.
pub fn id_from_base64(text: &str) -> Option<[u8; 16]> {
    let digits: Vec<u32> = text
        .bytes()
        .map(|c| B64.iter().position(|b| *b == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    if digits.len() != 22 {
        return None;
    }
    let mut out = [0u8; 16];
    for (k, chunk) in digits.chunks(4).enumerate() {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out[3 * k + i] = (n >> (16 - 8 * i)) as u8;
        }
    }
    // The last character carries 2 bits of data; the rest must be zero (one spelling per id).
    (id_to_base64(&out) == text).then_some(out)
}

pub fn encode(id: &[u8; 16]) -> String {
    format!("version: 0\ntopic_id: {}\n", id_to_base64(id))
}

pub fn decode(text: &str) -> Result<[u8; 16], String> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("version: 0") {
        return Err("unknown partition.metadata version".into());
    }
    let line = lines.next().ok_or("no topic_id line")?;
    let id = line.trim().strip_prefix("topic_id:").ok_or("no topic_id line")?.trim();
    id_from_base64(id).ok_or_else(|| format!("bad topic id {id:?}"))
}

/// Writes `dir/partition.metadata` (temp file, fsync, rename, directory fsync).
pub async fn write(storage: &dyn Storage, dir: &Path, id: &[u8; 16]) -> io::Result<()> {
    write_atomically(storage, dir, PARTITION_METADATA_FILE, encode(id).as_bytes()).await
}

/// The topic id `dir/partition.metadata` names; `None` when the file is missing (a directory
/// of an older Loglab) or unreadable as one (logged).
pub async fn read(storage: &dyn Storage, dir: &Path) -> io::Result<Option<[u8; 16]>> {
    let path = dir.join(PARTITION_METADATA_FILE);
    if !storage.exists(&path).await? {
        return Ok(None);
    }
    let file = storage.open(&path, OpenMode::Existing).await?;
    let len = usize::try_from(file.len()).unwrap_or(usize::MAX).min(FILE_BYTES_MAX);
    let bytes = file.read_at(0, len).await?;
    match std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(decode) {
        Ok(id) => Ok(Some(id)),
        Err(why) => {
            tracing::warn!(?path, %why, "ignoring malformed partition.metadata");
            Ok(None)
        }
    }
}

/// The name a retired directory of `tp` gets: `<topic>-<partition>.<unique>-delete`, the
/// `topic-partition` part shortened so the whole stays within 255 bytes (topic names are ASCII).
pub fn delete_dir_name(tp: &TopicPartition, unique: &[u8; 16]) -> String {
    let hex: String = unique.iter().map(|b| format!("{b:02x}")).collect();
    let suffix = format!(".{hex}{DELETE_DIR_SUFFIX}");
    let mut prefix = tp.dir_name();
    prefix.truncate(DIR_NAME_BYTES_MAX - suffix.len());
    prefix + &suffix
}

/// Whether a data-directory entry is a retired partition directory.
pub fn is_delete_dir(name: &str) -> bool {
    name.strip_suffix(DELETE_DIR_SUFFIX)
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(_, hex)| hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_spelling_of_ids() {
        // Kafka: Uuid.fromString("AAAAAAAAAAAAAAAAAAAAAQ") is (0, 1); "_____________________w" is all ones.
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(id_to_base64(&one), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(id_to_base64(&[0xff; 16]), "_____________________w");
        for id in [[0u8; 16], one, [0xff; 16], *b"0123456789abcdef"] {
            assert_eq!(id_from_base64(&id_to_base64(&id)), Some(id));
            assert_eq!(decode(&encode(&id)), Ok(id));
        }
        assert_eq!(id_from_base64("AAAAAAAAAAAAAAAAAAAAAR"), None, "non-zero padding bits");
        assert_eq!(id_from_base64("AAAA"), None);
        assert!(decode("version: 1\ntopic_id: AAAAAAAAAAAAAAAAAAAAAQ\n").is_err());
    }

    #[test]
    fn retired_directory_names() {
        let tp = TopicPartition::new("events", 3);
        let name = delete_dir_name(&tp, &[0xab; 16]);
        assert_eq!(name, format!("events-3.{}-delete", "ab".repeat(16)));
        assert!(is_delete_dir(&name));
        assert_eq!(TopicPartition::parse_dir_name(&name), None, "never opened as a log");
        assert!(!is_delete_dir("events-3"));
        let long = TopicPartition::new("x".repeat(249), 12);
        assert_eq!(delete_dir_name(&long, &[1; 16]).len(), 255);
    }
}
