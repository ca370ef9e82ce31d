//! The file that keeps the consumers' cursors across restarts:
//! `<storage dir>/cursors`, two slots overwritten in turn.
//!
//! The cursors change about every second. Replacing a file each time
//! (create, write, fsync, rename, fsync the directory) costs the
//! filesystem a new inode and a journal commit or two a second, wears
//! flash, and fails once the disk is full. Overwriting one of two slots
//! that were written out when the file was made costs one data block and
//! an `fdatasync`, and needs no new space (but on copy-on-write
//! filesystems such as btrfs and ZFS). A slot torn by a crash fails its
//! checksum and the other slot, one store older, is read instead: a crash
//! leaves the old or the new cursors, never a mix.
//!
//! Layout: two slots of `slot` bytes (a power of two, at least 4 KiB and
//! the filesystem's block size; the file is twice that). A store with
//! sequence number `n` goes to slot `n % 2`; each slot is a header
//! (`TRBCUR01`, the sequence and the payload's length as little-endian
//! u64 and u32, then the CRC32C of sequence, length and payload) followed
//! by the payload, JSON
//! `{"version":1,"consumers":{name:{"segment":…,"offset":…}}}`. Cursors
//! that outgrow a slot get a new file with larger slots, written beside
//! and renamed over the old one.
//!
//! Earlier versions kept the same JSON in `cursors.json`, replaced on every
//! store. It is read when `cursors` does not exist and removed once
//! `cursors` has been written.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::WalError;
use crate::reader::Position;
use crate::writer::sync_dir;

pub(crate) const CURSOR_FILE: &str = "cursors";
const LEGACY_FILE: &str = "cursors.json";
const MAGIC: &[u8; 8] = b"TRBCUR01";
const HEADER: usize = 24;
const MIN_SLOT: usize = 4096;
/// Far beyond any cursor file (a few hundred bytes an endpoint).
const MAX_FILE: u64 = 16 << 20;

#[derive(Serialize, Deserialize, Default)]
struct Payload {
    version: u32,
    consumers: BTreeMap<String, Position>,
}

/// Reads the persisted cursors of the storage directory `dir`; none if
/// there are none or the file cannot be read (logged).
pub fn read_cursors(dir: &Path) -> BTreeMap<String, Position> {
    read_persisted(dir).cursors
}

/// What `read_cursors` reads, and whether the file was damaged.
pub(crate) fn read_persisted(dir: &Path) -> Persisted {
    match read(dir) {
        Ok(found) => found.into_persisted(),
        Err(e) => {
            tracing::warn!(error = %e, "consumer cursor file unreadable");
            Persisted {
                cursors: BTreeMap::new(),
                damaged: false,
            }
        }
    }
}

/// What the storage directory holds.
#[derive(Default)]
struct Found {
    cursors: Option<BTreeMap<String, Position>>,
    /// The highest sequence of an intact slot: the next store goes above.
    sequence: u64,
    /// The cursors came from `cursors`, so a legacy file is stale.
    from_slots: bool,
    /// A cursor file is there but no cursors could be read from it.
    damaged: bool,
}

impl Found {
    fn into_persisted(self) -> Persisted {
        Persisted {
            cursors: self.cursors.unwrap_or_default(),
            damaged: self.damaged,
        }
    }
}

/// What `dir` holds. A file that is there but cannot be read (permissions,
/// I/O errors) is an error: taken as empty, its consumers would start at
/// the WAL's end and skip what they had not sent. A damaged file is logged
/// and reported as such: its consumers' positions are lost, and the
/// storage starts them at the WAL's oldest record (see
/// `AgentStorage::consumer`).
fn read(dir: &Path) -> Result<Found, WalError> {
    let path = dir.join(CURSOR_FILE);
    let Some(bytes) = read_file(&path)? else {
        let legacy = dir.join(LEGACY_FILE);
        let Some(bytes) = read_file(&legacy)? else {
            return Ok(Found::default());
        };
        let cursors = decode(&bytes, &legacy);
        return Ok(Found {
            damaged: cursors.is_none(),
            cursors,
            ..Found::default()
        });
    };
    let slots = intact_slots(&bytes);
    if slots.is_empty() {
        tracing::warn!(path = %path.display(), "ignoring consumer cursor file: neither slot is intact");
    }
    // The newer slot's payload should decode; if it does not (a payload
    // of a later version), the older one is still better than nothing.
    let cursors = slots.iter().find_map(|(_, payload)| decode(payload, &path));
    Ok(Found {
        from_slots: cursors.is_some(),
        damaged: cursors.is_none(),
        cursors,
        sequence: slots.first().map_or(0, |(sequence, _)| *sequence),
    })
}

/// The file's bytes, `None` if it does not exist. A file larger than any
/// cursor file reads as empty, which its caller takes as damaged.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, WalError> {
    let read = || -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        if file.metadata()?.len() > MAX_FILE {
            return Ok(Vec::new());
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE), &mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io("read cursor file", path)(e)),
    }
}

fn decode(payload: &[u8], path: &Path) -> Option<BTreeMap<String, Position>> {
    match serde_json::from_slice::<Payload>(payload) {
        Ok(p) => Some(p.consumers),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable consumer cursor file");
            None
        }
    }
}

/// The slot size of a cursor file `len` bytes long, if that is a layout
/// this module writes.
fn slot_size(len: u64) -> Option<usize> {
    let slot = usize::try_from(len / 2).ok()?;
    (slot >= MIN_SLOT && slot.is_power_of_two() && len.is_multiple_of(2)).then_some(slot)
}

/// The intact slots, newest first: (sequence, payload).
fn intact_slots(file: &[u8]) -> Vec<(u64, &[u8])> {
    let Some(slot) = slot_size(file.len() as u64) else {
        return Vec::new();
    };
    let (a, b) = file.split_at(slot);
    let mut slots: Vec<(u64, &[u8])> = [a, b].into_iter().filter_map(parse_slot).collect();
    slots.sort_by_key(|s| std::cmp::Reverse(s.0));
    slots
}

fn parse_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    let header = slot.get(..HEADER)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let sequence = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(header[16..20].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[20..24].try_into().ok()?);
    let payload = slot.get(HEADER..HEADER.checked_add(len)?)?;
    (checksum(&header[8..20], payload) == crc).then_some((sequence, payload))
}

fn checksum(sequence_and_len: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(sequence_and_len), payload)
}

fn encode_slot(sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = checksum(&out[8..20], payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes the cursors of one storage directory (see the module docs).
pub(crate) struct CursorStore {
    dir: PathBuf,
    /// The open `cursors` file and its slot size, once it exists.
    file: Option<(File, usize)>,
    /// The sequence of the newest store; the next goes to the other slot.
    sequence: u64,
}

/// What a storage directory's cursor file held at open.
pub(crate) struct Persisted {
    pub(crate) cursors: BTreeMap<String, Position>,
    /// The file was there but held no readable cursors: every consumer's
    /// position is lost, not just unknown.
    pub(crate) damaged: bool,
}

impl CursorStore {
    /// Reads what `dir` holds and opens its cursor file for the next
    /// store. A file of another layout, or none, is replaced at the first
    /// store; one that cannot be read is an error (see `read`).
    pub(crate) fn open(dir: &Path) -> Result<(CursorStore, Persisted), WalError> {
        let found = read(dir)?;
        if found.from_slots {
            // A crash between the first store's rename and the legacy
            // file's removal left it; it must not outlive the newer file.
            remove_legacy(dir);
        }
        let path = dir.join(CURSOR_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()
            .and_then(|f| {
                let slot = slot_size(f.metadata().ok()?.len())?;
                Some((f, slot))
            });
        let store = CursorStore {
            dir: dir.to_owned(),
            file,
            sequence: found.sequence,
        };
        Ok((store, found.into_persisted()))
    }

    /// Makes `cursors` what a restart reads: durable when this returns.
    pub(crate) fn store(&mut self, cursors: BTreeMap<String, Position>) -> Result<(), WalError> {
        let path = self.dir.join(CURSOR_FILE);
        let payload = serde_json::to_vec(&Payload {
            version: 1,
            consumers: cursors,
        })
        .map_err(|e| WalError::io("encode cursors", &path)(io::Error::other(e)))?;
        // A sequence at its end (read from a damaged disk) starts over in
        // a new file, where no slot holds a higher one.
        let (sequence, in_place) = match self.sequence.checked_add(1) {
            Some(next) => (next, true),
            None => (1, false),
        };
        let record = encode_slot(sequence, &payload);
        match &self.file {
            Some((file, slot)) if in_place && record.len() <= *slot => {
                let at = (sequence % 2) * *slot as u64;
                file.write_all_at(&record, at)
                    .and_then(|()| file.sync_data())
                    .map_err(WalError::io("write cursor file", &path))?;
            }
            _ => self.replace(sequence, &record)?,
        }
        self.sequence = sequence;
        Ok(())
    }

    /// A new file with slots large enough for `record`, renamed over the
    /// old one; the legacy file goes once the new one is durable.
    fn replace(&mut self, sequence: u64, record: &[u8]) -> Result<(), WalError> {
        let path = self.dir.join(CURSOR_FILE);
        let tmp = self.dir.join(format!("{CURSOR_FILE}.tmp"));
        // Slots no smaller than the filesystem's block, so that writing
        // one never rewrites the other's sectors.
        let block = fs::metadata(&self.dir).map_or(0, |m| {
            usize::try_from(std::os::unix::fs::MetadataExt::blksize(&m)).unwrap_or(0)
        });
        let slot = record
            .len()
            .max(MIN_SLOT)
            .max(block.min(1 << 20))
            .next_power_of_two();
        let mut body = vec![0u8; 2 * slot];
        let at = (sequence % 2) as usize * slot;
        body[at..at + record.len()].copy_from_slice(record);
        let write = || -> io::Result<File> {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            Ok(f)
        };
        let file = write().map_err(WalError::io("write cursor file", &tmp))?;
        fs::rename(&tmp, &path).map_err(WalError::io("rename cursor file", &path))?;
        // The old file is gone: later stores go to this one even if the
        // directory's fsync fails.
        self.file = Some((file, slot));
        sync_dir(&self.dir)?;
        remove_legacy(&self.dir);
        Ok(())
    }
}

fn remove_legacy(dir: &Path) {
    for old in [LEGACY_FILE, "cursors.json.tmp"] {
        match fs::remove_file(dir.join(old)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(path = %dir.join(old).display(), error = %e, "removing the old cursor file failed");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cursors(pairs: &[(&str, u32, u64)]) -> BTreeMap<String, Position> {
        pairs
            .iter()
            .map(|(n, s, o)| (n.to_string(), Position::new(*s, *o)))
            .collect()
    }

    #[test]
    fn stores_alternate_slots_in_place_and_the_newest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, found) = CursorStore::open(dir.path()).unwrap();
        assert!(found.cursors.is_empty());
        assert!(!found.damaged, "no file is no cursors, not lost ones");
        store.store(cursors(&[("a", 1, 10)])).unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let path = dir.path().join(CURSOR_FILE);
        let first = inode(&path);
        for i in 2..6u64 {
            store.store(cursors(&[("a", 1, 10 * i)])).unwrap();
            assert_eq!(read_cursors(dir.path()), cursors(&[("a", 1, 10 * i)]));
        }
        assert_eq!(inode(&path), first, "stores overwrite the file they made");
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * MIN_SLOT as u64);

        let (mut again, found) = CursorStore::open(dir.path()).unwrap();
        assert_eq!(found.cursors, cursors(&[("a", 1, 50)]));
        again.store(cursors(&[("a", 2, 0)])).unwrap();
        assert_eq!(read_cursors(dir.path()), cursors(&[("a", 2, 0)]));
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_store() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CursorStore::open(dir.path()).unwrap();
        store.store(cursors(&[("a", 1, 10)])).unwrap();
        store.store(cursors(&[("a", 1, 20)])).unwrap();
        // The second store went to slot 0 (sequence 2); tear its payload.
        let path = dir.path().join(CURSOR_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 5] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_cursors(dir.path()), cursors(&[("a", 1, 10)]));

        // Reopened, the next store takes sequence 2 again and so
        // overwrites the torn slot, not the intact one.
        let (mut again, _) = CursorStore::open(dir.path()).unwrap();
        again.store(cursors(&[("a", 1, 30)])).unwrap();
        assert_eq!(read_cursors(dir.path()), cursors(&[("a", 1, 30)]));
        let after = fs::read(&path).unwrap();
        assert_eq!(
            after[MIN_SLOT..],
            bytes[MIN_SLOT..],
            "the intact slot was kept"
        );
        let (_, found) = CursorStore::open(dir.path()).unwrap();
        assert_eq!(found.cursors, cursors(&[("a", 1, 30)]));
        assert!(!found.damaged);
    }

    #[test]
    fn cursors_outgrowing_a_slot_get_larger_slots() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CursorStore::open(dir.path()).unwrap();
        store.store(cursors(&[("a", 1, 10)])).unwrap();
        let long: Vec<(String, u32, u64)> = (0..200)
            .map(|i| (format!("endpoint-with-a-long-name-{i:04}"), 3, i))
            .collect();
        let many: BTreeMap<String, Position> = long
            .iter()
            .map(|(n, s, o)| (n.clone(), Position::new(*s, *o)))
            .collect();
        store.store(many.clone()).unwrap();
        let len = fs::metadata(dir.path().join(CURSOR_FILE)).unwrap().len();
        assert!(len > 2 * MIN_SLOT as u64, "{len}");
        assert_eq!(read_cursors(dir.path()), many);
        store.store(cursors(&[("b", 4, 1)])).unwrap();
        assert_eq!(read_cursors(dir.path()), cursors(&[("b", 4, 1)]));
    }

    #[test]
    fn the_legacy_file_is_read_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join(LEGACY_FILE);
        fs::write(
            &legacy,
            r#"{"version":1,"consumers":{"rw":{"segment":7,"offset":4096}}}"#,
        )
        .unwrap();
        let (mut store, found) = CursorStore::open(dir.path()).unwrap();
        assert_eq!(found.cursors, cursors(&[("rw", 7, 4096)]));
        assert_eq!(read_cursors(dir.path()), cursors(&[("rw", 7, 4096)]));
        store.store(cursors(&[("rw", 7, 8192)])).unwrap();
        assert!(!legacy.exists());
        assert_eq!(read_cursors(dir.path()), cursors(&[("rw", 7, 8192)]));
    }

    #[test]
    fn garbage_is_no_cursor() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CURSOR_FILE), vec![7u8; 2 * MIN_SLOT]).unwrap();
        assert!(read_cursors(dir.path()).is_empty());
        fs::write(dir.path().join(CURSOR_FILE), b"short").unwrap();
        let (mut store, found) = CursorStore::open(dir.path()).unwrap();
        assert!(found.cursors.is_empty());
        assert!(found.damaged);
        store.store(cursors(&[("a", 1, 1)])).unwrap();
        assert_eq!(read_cursors(dir.path()), cursors(&[("a", 1, 1)]));
        assert!(!CursorStore::open(dir.path()).unwrap().1.damaged);
    }

    #[test]
    fn a_legacy_file_that_does_not_decode_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LEGACY_FILE), b"{\"version\":1,\"consu").unwrap();
        let (_, found) = CursorStore::open(dir.path()).unwrap();
        assert!(found.cursors.is_empty());
        assert!(found.damaged);
    }

    #[test]
    fn a_legacy_file_left_beside_the_slots_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CursorStore::open(dir.path()).unwrap();
        store.store(cursors(&[("rw", 9, 1)])).unwrap();
        let legacy = dir.path().join(LEGACY_FILE);
        fs::write(
            &legacy,
            r#"{"version":1,"consumers":{"rw":{"segment":1,"offset":0}}}"#,
        )
        .unwrap();
        let (_, found) = CursorStore::open(dir.path()).unwrap();
        assert_eq!(found.cursors, cursors(&[("rw", 9, 1)]));
        assert!(!legacy.exists());
    }

    /// A storage directory whose cursor file holds one store (sequence 1,
    /// in slot 1) of `a` at segment 1, offset 10; and the file's path.
    fn stored_once() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CursorStore::open(dir.path()).unwrap();
        store.store(cursors(&[("a", 1, 10)])).unwrap();
        let path = dir.path().join(CURSOR_FILE);
        (dir, path)
    }

    /// Writes an intact slot into slot `index` of the file at `path`
    /// behind the store's back, at the slot size the file's length gives.
    fn write_slot(path: &Path, index: u64, sequence: u64, payload: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        let slot = slot_size(file.metadata().unwrap().len()).unwrap();
        file.write_all_at(&encode_slot(sequence, payload), index * slot as u64)
            .unwrap();
    }

    #[test]
    fn a_newest_slot_that_does_not_decode_falls_back_to_the_older() {
        let (dir, path) = stored_once();
        // Sequence 2 in slot 0: intact, but not a payload this version reads.
        write_slot(&path, 0, 2, b"{\"version\":2,\"x\":[]}");
        let (mut again, found) = CursorStore::open(dir.path()).unwrap();
        assert_eq!(found.cursors, cursors(&[("a", 1, 10)]));
        // The next store goes above the highest intact sequence (to slot 1).
        again.store(cursors(&[("a", 1, 20)])).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(intact_slots(&bytes)[0].0, 3);
        assert_eq!(read_cursors(dir.path()), cursors(&[("a", 1, 20)]));
    }

    #[test]
    fn a_sequence_at_its_end_starts_over_in_a_new_file() {
        let (dir, path) = stored_once();
        let payload = br#"{"version":1,"consumers":{"a":{"segment":1,"offset":11}}}"#;
        write_slot(&path, 1, u64::MAX, payload);
        let (mut again, found) = CursorStore::open(dir.path()).unwrap();
        assert_eq!(found.cursors, cursors(&[("a", 1, 11)]));
        again.store(cursors(&[("a", 1, 12)])).unwrap();
        assert_eq!(read_cursors(dir.path()), cursors(&[("a", 1, 12)]));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(intact_slots(&bytes).len(), 1);
    }

    #[test]
    fn a_cursor_file_that_cannot_be_read_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in its place: reading fails, even for root.
        fs::create_dir(dir.path().join(CURSOR_FILE)).unwrap();
        let err = CursorStore::open(dir.path()).err().expect("an error");
        assert!(err.to_string().contains("read cursor file"), "{err}");
        assert!(read_cursors(dir.path()).is_empty());
    }
}
