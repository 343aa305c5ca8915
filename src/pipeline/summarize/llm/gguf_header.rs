//! A quick pass over a GGUF header for what candle's reader assumes without
//! checking, run before candle reads it: a `general.alignment` of 0 makes
//! `gguf_file::Content::read` divide by zero (a panic, found by fuzzing).
//!
//! The pass only skips over values (it allocates nothing a file could
//! size); anything it cannot read it leaves for candle to report.

use std::io::{self, Read, Seek, SeekFrom};

/// GGUF value types with a fixed size, by type id.
fn fixed_size(kind: u32) -> Option<i64> {
    match kind {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

const STRING: u32 = 8;
const ARRAY: u32 = 9;
/// candle refuses deeper nesting itself.
const MAX_DEPTH: usize = 64;

/// Skips up to this long are read, not seeked (see [`Scan::skip`]).
const SKIP_BY_READING: u64 = 64 << 10;

struct Scan<'a, R> {
    reader: &'a mut R,
    /// GGUF v1 writes lengths as u32, later versions as u64.
    wide: bool,
}

impl<R: Read + Seek> Scan<'_, R> {
    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.reader.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn len(&mut self) -> io::Result<u64> {
        if self.wide {
            let mut b = [0u8; 8];
            self.reader.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        } else {
            self.u32().map(u64::from)
        }
    }

    /// Skips `n` bytes: short runs are read through (a seek on a
    /// `BufReader` drops its buffer: one `lseek` and one `read` per string
    /// of a 262k-token vocabulary took 0.4 s), long ones seeked over.
    fn skip(&mut self, n: u64) -> io::Result<()> {
        if n <= SKIP_BY_READING {
            let read = io::copy(&mut self.reader.by_ref().take(n), &mut io::sink())?;
            return if read == n {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        let n = i64::try_from(n).map_err(|_| io::ErrorKind::InvalidData)?;
        self.reader.seek(SeekFrom::Current(n)).map(|_| ())
    }

    fn skip_value(&mut self, kind: u32, depth: usize) -> io::Result<()> {
        if let Some(size) = fixed_size(kind) {
            return self.skip(size as u64);
        }
        match kind {
            STRING => {
                let n = self.len()?;
                self.skip(n)
            }
            ARRAY if depth < MAX_DEPTH => {
                let inner = self.u32()?;
                let count = self.len()?;
                if let Some(size) = fixed_size(inner) {
                    let bytes = count
                        .checked_mul(size as u64)
                        .ok_or(io::ErrorKind::InvalidData)?;
                    return self.skip(bytes);
                }
                // Each element takes at least 4 bytes, so the end of the
                // file ends this loop whatever `count` claims.
                for _ in 0..count {
                    self.skip_value(inner, depth + 1)?;
                }
                Ok(())
            }
            _ => Err(io::ErrorKind::InvalidData.into()),
        }
    }

    /// What is wrong with the header, if anything candle would choke on.
    fn problem(&mut self) -> io::Result<Option<String>> {
        let mut magic = [0u8; 4];
        self.reader.read_exact(&mut magic)?;
        if &magic != b"GGUF" {
            return Ok(None);
        }
        self.wide = match self.u32()? {
            1 => false,
            2 | 3 => true,
            _ => return Ok(None),
        };
        let _tensors = self.len()?;
        let entries = self.len()?;
        for _ in 0..entries {
            let key_len = self.len()?;
            if key_len != "general.alignment".len() as u64 {
                self.skip(key_len)?;
                let kind = self.u32()?;
                self.skip_value(kind, 0)?;
                continue;
            }
            let mut key = [0u8; 17];
            self.reader.read_exact(&mut key)?;
            let kind = self.u32()?;
            if &key != b"general.alignment" || fixed_size(kind).is_none() {
                self.skip_value(kind, 0)?;
                continue;
            }
            let mut value = [0u8; 8];
            let size = fixed_size(kind).unwrap_or(0) as usize;
            self.reader.read_exact(&mut value[..size])?;
            if value.iter().all(|&b| b == 0) {
                return Ok(Some("general.alignment is 0".into()));
            }
        }
        Ok(None)
    }
}

/// Checks the GGUF header at the start of `reader` for values candle's
/// reader cannot take; returns the reason, if any, and rewinds `reader`.
pub fn unreadable_by_candle<R: Read + Seek>(reader: &mut R) -> io::Result<Option<String>> {
    let problem = Scan {
        reader: &mut *reader,
        wide: true,
    }
    .problem()
    .unwrap_or(None);
    reader.seek(SeekFrom::Start(0))?;
    Ok(problem)
}

/// A reader that knows its own position: candle's `Content::read` asks
/// for it before every string (`stream_position`), and a `BufReader` over a
/// file answers with an `lseek` system call: 300k of them for the 1.5 B's
/// vocabulary and merges, a tenth of a second.
pub struct Tracked<'a, R> {
    inner: &'a mut R,
    pos: u64,
}

impl<'a, R: Seek> Tracked<'a, R> {
    /// Starts at `inner`'s current position (asked once).
    pub fn new(inner: &'a mut R) -> io::Result<Self> {
        let pos = inner.stream_position()?;
        Ok(Self { inner, pos })
    }
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Tracked<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if to == SeekFrom::Current(0) {
            return Ok(self.pos);
        }
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(alignment: &[u8], kind: u32) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        // One entry to skip: an array of two strings.
        b.extend(4u64.to_le_bytes());
        b.extend(b"list");
        b.extend(ARRAY.to_le_bytes());
        b.extend(STRING.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        for s in ["a", "bc"] {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        }
        b.extend(17u64.to_le_bytes());
        b.extend(b"general.alignment");
        b.extend(kind.to_le_bytes());
        b.extend(alignment);
        b
    }

    #[test]
    fn a_zero_alignment_is_found_behind_other_entries() {
        let mut zero = Cursor::new(header(&0u32.to_le_bytes(), 4));
        assert!(unreadable_by_candle(&mut zero).unwrap().is_some());
        assert_eq!(zero.position(), 0);
        let mut zero8 = Cursor::new(header(&[0], 0));
        assert!(unreadable_by_candle(&mut zero8).unwrap().is_some());
        let mut fine = Cursor::new(header(&32u32.to_le_bytes(), 4));
        assert!(unreadable_by_candle(&mut fine).unwrap().is_none());
        // Garbage and cut headers are left for candle to report.
        for bytes in [&b""[..], &b"GGUF"[..], &b"GGUF\x03\x00\x00\x00\xff"[..]] {
            assert!(unreadable_by_candle(&mut Cursor::new(bytes))
                .unwrap()
                .is_none());
        }
    }

    #[test]
    // `seek(Current(0))` on purpose: callers may ask either way.
    #[allow(clippy::seek_from_current)]
    fn tracked_positions_match_the_reader() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut inner = io::BufReader::with_capacity(64, io::Cursor::new(data.clone()));
        inner.seek(SeekFrom::Start(7)).unwrap();
        let mut t = Tracked::new(&mut inner).unwrap();
        let mut buf = [0u8; 100];
        t.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &data[7..107]);
        assert_eq!(t.stream_position().unwrap(), 107);
        assert_eq!(t.seek(SeekFrom::Current(0)).unwrap(), 107);
        assert_eq!(t.seek(SeekFrom::Current(-50)).unwrap(), 57);
        t.read_exact(&mut buf[..3]).unwrap();
        assert_eq!(&buf[..3], &data[57..60]);
        assert_eq!(t.seek(SeekFrom::End(-1)).unwrap(), 9_999);
        assert_eq!(t.read(&mut buf).unwrap(), 1);
        assert_eq!(t.stream_position().unwrap(), 10_000);
        assert_eq!(inner.stream_position().unwrap(), 10_000);
    }
}
