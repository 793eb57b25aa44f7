//! Durable state: what a node keeps across a crash.
//!
//! A protocol that must remember something through a crash (a vote, a term,
//! a log entry) writes it with [`Context::persist`](crate::Context::persist)
//! and gets it back, after a restart, in
//! [`State::on_recover`](crate::State::on_recover). Everything else a node
//! holds is volatile and gone after a crash.
//!
//! `persist` is a barrier: a message the handler sends after it leaves only
//! once the write is durable, so no peer ever sees a promise (a vote, an
//! acknowledgement) that a crash could take back. Messages sent before it
//! leave at once. Writes made by one batch of handler calls become durable
//! together, in order, or (after a crash in the middle) not at all.
//!
//! The state is a small key-value map ([`Stored`]), bounded by
//! [`KEYS_MAX`], [`KEY_BYTES_MAX`] and [`VALUE_BYTES_MAX`]: a protocol keeps
//! in it what it must, and compacts (a snapshot under one key, erasing the
//! log entries it covers) as it goes.
//!
//! Where it lives depends on the driver:
//!
//! - The simulator keeps each node's [`Stored`] in the node's slot, outside
//!   the process, so it survives a crash and a restart; it can crash a node
//!   between a persist and the sends behind it, with the write made durable
//!   or lost (both are possible on a real machine).
//! - The real runtime appends each batch of writes to a file in the node's
//!   run directory ([`StateFile`]), with `fsync` before the messages behind
//!   the barrier leave, or without it (faster, and not crash-safe: a run with
//!   it off says so).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use bincode::{Decode, Encode};
use xxhash_rust::xxh3::xxh3_64;

/// Keys a node may keep at once.
pub const KEYS_MAX: usize = 1 << 16;
/// Longest key.
pub const KEY_BYTES_MAX: usize = 256;
/// Longest value: room for an application snapshot.
pub const VALUE_BYTES_MAX: usize = 256 << 20;

/// One change to durable state.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Write {
    /// Sets `key` to the value, replacing what it held.
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`; a no-op if it is not there.
    Erase(Vec<u8>),
}

impl Write {
    fn key(&self) -> &[u8] {
        match self {
            Write::Put(key, _) | Write::Erase(key) => key,
        }
    }
}

/// Why a write was refused: the protocol asked for more than the bounds
/// allow. A bug in the protocol, not something a peer can cause, so drivers
/// treat it as fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    KeyTooLong(usize),
    ValueTooLong(usize),
    TooManyKeys,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::KeyTooLong(n) => {
                write!(f, "durable key of {n} bytes (at most {KEY_BYTES_MAX})")
            }
            Refused::ValueTooLong(n) => {
                write!(f, "durable value of {n} bytes (at most {VALUE_BYTES_MAX})")
            }
            Refused::TooManyKeys => write!(f, "more than {KEYS_MAX} durable keys"),
        }
    }
}

impl std::error::Error for Refused {}

/// A node's durable state, as a map from key to value, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Keys and values summed.
    bytes: usize,
}

impl Stored {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn prefixed<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.map
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keys and values, summed.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Checks a batch against the bounds, given the state it would apply
    /// to: every key and value within its length, and room for the keys it
    /// adds (counted without looking for repeats within the batch, so a
    /// batch near the limit may be refused that would just have fitted).
    pub fn check(&self, writes: &[Write]) -> Result<(), Refused> {
        let mut added = 0;
        for write in writes {
            let key = write.key();
            if key.len() > KEY_BYTES_MAX {
                return Err(Refused::KeyTooLong(key.len()));
            }
            if let Write::Put(key, value) = write {
                if value.len() > VALUE_BYTES_MAX {
                    return Err(Refused::ValueTooLong(value.len()));
                }
                if !self.map.contains_key(key) {
                    added += 1;
                }
            }
        }
        if self.map.len() + added > KEYS_MAX {
            return Err(Refused::TooManyKeys);
        }
        Ok(())
    }

    /// Applies a batch of writes in order, if [`Stored::check`] accepts it;
    /// otherwise changes nothing. The keys and values move in, uncopied.
    pub fn apply(&mut self, writes: Vec<Write>) -> Result<(), Refused> {
        self.check(&writes)?;
        self.apply_checked(writes);
        Ok(())
    }

    /// [`Stored::apply`] of writes [`Stored::check`] accepted.
    fn apply_checked(&mut self, writes: Vec<Write>) {
        for write in writes {
            match write {
                Write::Put(key, value) => {
                    self.bytes += key.len() + value.len();
                    let len = key.len();
                    if let Some(old) = self.map.insert(key, value) {
                        self.bytes -= len + old.len();
                    }
                }
                Write::Erase(key) => {
                    if let Some(old) = self.map.remove(&key) {
                        self.bytes -= key.len() + old.len();
                    }
                }
            }
        }
    }
}

/// Whether [`StateFile::commit`] waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// `fsync` after every batch: durable when `commit` returns.
    Fsync,
    /// Written to the page cache only: survives a process crash, not a
    /// machine's. Not crash-safe in the model's sense.
    NoFsync,
}

/// Bytes in front of every record: its length (u32) and checksum (u64).
const RECORD_HEADER: usize = 12;
/// Shortest file worth compacting.
const COMPACT_BYTES_MIN: u64 = 1 << 20;
/// Keys and values per record of a compacted file, about.
const COMPACT_RECORD_BYTES: usize = 64 << 20;

/// Durable state in a file: a log of batches, each a record with a length
/// and a checksum, replayed on open. A torn record at the end (a crash in
/// the middle of a write) ends the replay, and everything before it stands;
/// a damaged record with good ones after it fails the open, since cutting
/// there would take back writes whose messages have left. When the log has
/// grown to several times the live state it is rewritten, into a new file
/// renamed over the old one.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    file: File,
    sync: Sync,
    stored: Stored,
    /// Length of the log.
    len: u64,
    /// Scratch space for one record.
    buf: Vec<u8>,
}

impl StateFile {
    /// Opens (or creates) the state file at `path` and replays it.
    pub fn open(path: &Path, sync: Sync) -> io::Result<StateFile> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (stored, valid) = replay(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if valid < bytes.len() {
            // Cut off the torn tail, so that new records follow good ones.
            file.set_len(valid as u64)?;
        }
        let state = StateFile {
            path: path.to_path_buf(),
            file,
            sync,
            stored,
            len: valid as u64,
            buf: Vec::new(),
        };
        if sync == Sync::Fsync {
            state.sync_dir()?;
        }
        Ok(state)
    }

    /// What the file holds.
    pub fn stored(&self) -> &Stored {
        &self.stored
    }

    pub fn sync(&self) -> Sync {
        self.sync
    }

    /// Appends `writes` as one batch, durable (with [`Sync::Fsync`]) when
    /// this returns. An error leaves the file's state unknown: the caller
    /// must stop.
    pub fn commit(&mut self, writes: Vec<Write>) -> io::Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        self.stored
            .check(&writes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.buf.clear();
        encode_record(&writes, &mut self.buf)?;
        self.file.write_all(&self.buf)?;
        if self.sync == Sync::Fsync {
            self.file.sync_data()?;
        }
        self.len += self.buf.len() as u64;
        self.stored.apply_checked(writes);
        if self.len >= COMPACT_BYTES_MIN && self.len > 4 * (self.stored.bytes() as u64 + 64) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log as the live state, in records of at most about
    /// [`COMPACT_RECORD_BYTES`] each, into a new file renamed over the old
    /// one (all or nothing: a crash leaves one file or the other).
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("compacting");
        let mut len = 0;
        {
            let mut file = File::create(&tmp)?;
            let mut writes = Vec::new();
            let mut bytes = 0;
            let entries = self.stored.iter();
            let mut flush = |writes: &mut Vec<Write>, buf: &mut Vec<u8>| -> io::Result<()> {
                buf.clear();
                encode_record(writes, buf)?;
                file.write_all(buf)?;
                len += buf.len() as u64;
                writes.clear();
                Ok(())
            };
            for (k, v) in entries {
                if bytes + k.len() + v.len() > COMPACT_RECORD_BYTES && !writes.is_empty() {
                    flush(&mut writes, &mut self.buf)?;
                    bytes = 0;
                }
                bytes += k.len() + v.len();
                writes.push(Write::Put(k.to_vec(), v.to_vec()));
            }
            if !writes.is_empty() {
                flush(&mut writes, &mut self.buf)?;
            }
            if self.sync == Sync::Fsync {
                file.sync_data()?;
            }
        }
        fs::rename(&tmp, &self.path)?;
        if self.sync == Sync::Fsync {
            self.sync_dir()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = len;
        Ok(())
    }

    /// Makes the file's name durable (a create or a rename).
    fn sync_dir(&self) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
}

fn encode_record(writes: &[Write], out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    bincode::encode_into_std_write(writes, out, bincode::config::standard())
        .map_err(io::Error::other)?;
    let body = &out[start + RECORD_HEADER..];
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "durable batch over 4 GiB"))?;
    let sum = xxh3_64(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + RECORD_HEADER].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The state the records in `bytes` build, and how many bytes of whole,
/// intact records they start with. A torn last record (cut short, or
/// garbled to the end of the file: a crash in the middle of its write) ends
/// the replay; a bad record with more after it is damage, not a crash, and
/// an error: the file would otherwise be cut back past writes whose
/// messages have left.
fn replay(bytes: &[u8]) -> Result<(Stored, usize), String> {
    let mut stored = Stored::default();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let sum = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        let end = at + RECORD_HEADER + len;
        let Some(body) = bytes.get(at + RECORD_HEADER..end) else {
            break; // Torn: the crash came in the middle of this record.
        };
        if xxh3_64(body) != sum {
            if end == bytes.len() {
                break; // Torn: the last record, garbled to the end.
            }
            return Err(format!(
                "damaged: the record at byte {at} fails its checksum, and {} bytes follow it",
                bytes.len() - end
            ));
        }
        // The checksum vouches for the body: it is what `commit` wrote, so
        // its lengths need no limit here (a limit would cut off a batch
        // `commit` accepted).
        let (writes, used) =
            bincode::decode_from_slice::<Vec<Write>, _>(body, bincode::config::standard())
                .map_err(|e| format!("the record at byte {at} does not decode: {e}"))?;
        if used != body.len() {
            return Err(format!("the record at byte {at} has trailing bytes"));
        }
        stored
            .apply(writes)
            .map_err(|e| format!("the record at byte {at}: {e}"))?;
        at = end;
    }
    Ok((stored, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Write {
        Write::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn stored_tracks_bytes_and_bounds() {
        let mut s = Stored::default();
        s.apply(vec![put("a", "xy"), put("b", "z"), put("a", "w")])
            .unwrap();
        assert_eq!(s.bytes(), 4);
        assert_eq!(s.get(b"a"), Some(&b"w"[..]));
        s.apply(vec![
            Write::Erase(b"a".to_vec()),
            Write::Erase(b"q".to_vec()),
        ])
        .unwrap();
        assert_eq!(s.bytes(), 2);
        assert_eq!(
            s.check(&[Write::Put(vec![0; KEY_BYTES_MAX + 1], vec![])]),
            Err(Refused::KeyTooLong(KEY_BYTES_MAX + 1))
        );
        assert_eq!(
            s.prefixed(b"b").collect::<Vec<_>>(),
            [(&b"b"[..], &b"z"[..])]
        );
    }

    #[test]
    fn a_file_replays_what_was_committed() {
        let dir = dir("replay");
        let path = dir.join("state");
        for sync in [Sync::Fsync, Sync::NoFsync] {
            let _ = fs::remove_file(&path);
            let mut file = StateFile::open(&path, sync).unwrap();
            assert!(file.stored().is_empty());
            file.commit(vec![put("vote", "1"), put("log/1", "x")])
                .unwrap();
            file.commit(vec![put("vote", "2"), Write::Erase(b"log/1".to_vec())])
                .unwrap();
            let expect = file.stored().clone();
            drop(file);
            let file = StateFile::open(&path, sync).unwrap();
            assert_eq!(file.stored(), &expect);
            assert_eq!(file.stored().get(b"vote"), Some(&b"2"[..]));
            assert_eq!(file.stored().len(), 1);
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_what_came_before_stands() {
        let dir = dir("torn");
        let path = dir.join("state");
        let mut file = StateFile::open(&path, Sync::NoFsync).unwrap();
        file.commit(vec![put("a", "1")]).unwrap();
        let good = fs::metadata(&path).unwrap().len();
        file.commit(vec![put("a", "2")]).unwrap();
        drop(file);
        let full = fs::read(&path).unwrap();
        for cut in (good as usize..full.len()).step_by(3) {
            fs::write(&path, &full[..cut]).unwrap();
            let mut file = StateFile::open(&path, Sync::NoFsync).unwrap();
            assert_eq!(file.stored().get(b"a"), Some(&b"1"[..]), "cut at {cut}");
            // New records follow the good ones.
            file.commit(vec![put("b", "3")]).unwrap();
            drop(file);
            let file = StateFile::open(&path, Sync::NoFsync).unwrap();
            assert_eq!(file.stored().get(b"b"), Some(&b"3"[..]), "cut at {cut}");
        }
        let mut corrupt = full.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        fs::write(&path, &corrupt).unwrap();
        let file = StateFile::open(&path, Sync::NoFsync).unwrap();
        assert_eq!(file.stored().get(b"a"), Some(&b"1"[..]));
        fs::remove_dir_all(dir).unwrap();
    }

    /// A bad record with good ones after it is damage, not a torn write:
    /// the open fails rather than cut the file back past acknowledged
    /// writes, and the file is left as it was.
    #[test]
    fn damage_before_the_tail_fails_the_open() {
        let dir = dir("damage");
        let path = dir.join("state");
        let mut file = StateFile::open(&path, Sync::NoFsync).unwrap();
        for i in 0..10 {
            file.commit(vec![put(&format!("k{i}"), "v")]).unwrap();
        }
        drop(file);
        let mut bytes = fs::read(&path).unwrap();
        bytes[RECORD_HEADER + 2] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = StateFile::open(&path, Sync::NoFsync).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("damaged"), "{error}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "left as it was");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_log_is_compacted_and_keeps_the_state() {
        let dir = dir("compact");
        let path = dir.join("state");
        let mut file = StateFile::open(&path, Sync::NoFsync).unwrap();
        let value = "v".repeat(4096);
        for i in 0..2000 {
            file.commit(vec![put(&format!("k{}", i % 4), &value)])
                .unwrap();
        }
        let len = fs::metadata(&path).unwrap().len();
        assert!(len < 2 * COMPACT_BYTES_MIN, "{len} bytes after compaction");
        let expect = file.stored().clone();
        drop(file);
        assert_eq!(
            StateFile::open(&path, Sync::NoFsync).unwrap().stored(),
            &expect
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refused_batch_changes_nothing() {
        let dir = dir("refused");
        let path = dir.join("state");
        let mut file = StateFile::open(&path, Sync::NoFsync).unwrap();
        file.commit(vec![put("a", "1")]).unwrap();
        let too_long = Write::Put(vec![1; KEY_BYTES_MAX + 1], vec![]);
        assert!(file.commit(vec![put("a", "2"), too_long]).is_err());
        assert_eq!(file.stored().get(b"a"), Some(&b"1"[..]));
        drop(file);
        let file = StateFile::open(&path, Sync::NoFsync).unwrap();
        assert_eq!(file.stored().get(b"a"), Some(&b"1"[..]));
        fs::remove_dir_all(dir).unwrap();
    }
}
