//! Moving a CRIU dump to another uid range.
//!
//! CRIU records a sandbox's user-namespace mapping in `userns-<n>.img` and
//! recreates the namespace from it at restore. Everything else in the dump is
//! in the sandbox's own ids (credentials are translated through the mapping),
//! and the sandbox's files are stored unshifted (see [`crate::layer`]), so a
//! dump restores under any range once that mapping is rewritten. A sandbox
//! resumes under whatever range is free, and each copy restored from a memory
//! snapshot gets a range of its own.
//!
//! The image is CRIU's format: two magic words, then size-prefixed protobuf
//! entries. The entry is `UsernsEntry { repeated UidGidExtent uid_map = 1;
//! repeated UidGidExtent gid_map = 2; }` with `UidGidExtent { uint32 first =
//! 1; uint32 lower_first = 2; uint32 count = 3; }`; only `lower_first` (the
//! host id) changes.

use std::path::Path;

use crate::error::{Result, RuntimeError};

fn bad(path: &Path, what: &str) -> RuntimeError {
    RuntimeError::Config(format!("CRIU image {}: {what}", path.display()))
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One extent of a mapping: (first, lower_first, count).
type Extent = (u64, u64, u64);

/// Decodes a `UsernsEntry` into its (field number, extent) list.
fn decode_entry(pb: &[u8]) -> Option<Vec<(u64, Extent)>> {
    let mut pos = 0;
    let mut extents = Vec::new();
    while pos < pb.len() {
        let key = read_varint(pb, &mut pos)?;
        if key & 7 != 2 {
            return None;
        }
        let len = usize::try_from(read_varint(pb, &mut pos)?).ok()?;
        let body = pb.get(pos..pos.checked_add(len)?)?;
        pos += len;
        let (mut first, mut lower, mut count) = (0, 0, 0);
        let mut p = 0;
        while p < body.len() {
            let k = read_varint(body, &mut p)?;
            if k & 7 != 0 {
                return None;
            }
            let v = read_varint(body, &mut p)?;
            match k >> 3 {
                1 => first = v,
                2 => lower = v,
                3 => count = v,
                _ => return None,
            }
        }
        extents.push((key >> 3, (first, lower, count)));
    }
    Some(extents)
}

fn encode_entry(extents: &[(u64, Extent)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(field, (first, lower, count)) in extents {
        let mut body = Vec::new();
        for (n, v) in [(1u64, first), (2, lower), (3, count)] {
            write_varint(&mut body, n << 3);
            write_varint(&mut body, v);
        }
        write_varint(&mut out, (field << 3) | 2);
        write_varint(&mut out, body.len() as u64);
        out.extend(body);
    }
    out
}

/// Rewrites the mapping in the image bytes so that id 0 maps to `new_first`;
/// every extent moves by the same offset.
pub fn remap(bytes: &[u8], new_first: u32) -> Option<Vec<u8>> {
    let header = bytes.get(..8)?;
    let size = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let pb = bytes.get(12..12usize.checked_add(size)?)?;
    let rest = bytes.get(12 + size..)?;
    let extents = decode_entry(pb)?;
    let old_first = extents
        .iter()
        .find(|(_, (first, _, _))| *first == 0)
        .map(|(_, (_, lower, _))| *lower)?;
    let moved: Vec<(u64, Extent)> = extents
        .into_iter()
        .map(|(f, (first, lower, count))| {
            // The numbers come from a dump the sandbox's processes shaped: checked, never wrapped.
            let shifted = lower
                .checked_sub(old_first)?
                .checked_add(u64::from(new_first))?;
            (shifted.checked_add(count)? <= u64::from(u32::MAX))
                .then_some((f, (first, shifted, count)))
        })
        .collect::<Option<_>>()?;
    let entry = encode_entry(&moved);
    let mut out = header.to_vec();
    out.extend((entry.len() as u32).to_le_bytes());
    out.extend(entry);
    out.extend(rest);
    Some(out)
}

/// Rewrites every `userns-*.img` in the CRIU image directory `dir` for a
/// restore under `new_first`. The files are replaced, not edited in place,
/// so a directory of hard links to a snapshot's images leaves the snapshot
/// untouched.
pub fn retarget_userns(dir: &Path, new_first: u32) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(RuntimeError::io("listing", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("userns-") && name.ends_with(".img")) {
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path).map_err(RuntimeError::io("reading", &path))?;
        let moved = remap(&bytes, new_first).ok_or_else(|| bad(&path, "unexpected contents"))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, moved).map_err(RuntimeError::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(RuntimeError::io("renaming", &tmp))?;
    }
    Ok(())
}

/// Makes `dest` a directory of hard links to the files of the image
/// directory `source` (no page is copied), for one restore to rewrite.
pub fn link_copy(source: &Path, dest: &Path) -> Result<()> {
    let _ = crate::remove_tree::remove_tree(dest);
    std::fs::create_dir(dest).map_err(RuntimeError::io("creating", dest))?;
    let entries = std::fs::read_dir(source).map_err(RuntimeError::io("listing", source))?;
    for entry in entries.flatten() {
        let from = entry.path();
        let meta =
            std::fs::symlink_metadata(&from).map_err(RuntimeError::io("inspecting", &from))?;
        if !meta.is_file() {
            continue;
        }
        let to = dest.join(entry.file_name());
        std::fs::hard_link(&from, &to).map_err(RuntimeError::io("linking", &to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The userns image CRIU 4.2.1 wrote for a sandbox mapped at 0x20050000.
    fn sample(first: u32) -> Vec<u8> {
        let mut out = vec![0x19, 0x43, 0x56, 0x54, 0x06, 0x49, 0x47, 0x55];
        let entry = encode_entry(&[
            (1, (0, u64::from(first), 65536)),
            (2, (0, u64::from(first), 65536)),
        ]);
        out.extend((entry.len() as u32).to_le_bytes());
        out.extend(entry);
        out
    }

    #[test]
    fn matches_criu_bytes_and_remaps() {
        // Bytes of a real dump (range first = 2^31 + 5 * 65536).
        let real: [u8; 40] = [
            0x19, 0x43, 0x56, 0x54, 0x06, 0x49, 0x47, 0x55, 0x1c, 0x00, 0x00, 0x00, 0x0a, 0x0c,
            0x08, 0x00, 0x10, 0x80, 0x80, 0x94, 0x80, 0x08, 0x18, 0x80, 0x80, 0x04, 0x12, 0x0c,
            0x08, 0x00, 0x10, 0x80, 0x80, 0x94, 0x80, 0x08, 0x18, 0x80, 0x80, 0x04,
        ];
        assert_eq!(sample(0x8005_0000), real);
        let moved = remap(&real, 0x2007_0000).expect("remap");
        assert_eq!(moved, sample(0x2007_0000));
        assert_eq!(remap(&moved, 0x8005_0000).expect("back"), real.to_vec());
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(remap(b"short", 1).is_none());
        let mut truncated = sample(0x2000_0000);
        truncated.truncate(20);
        assert!(remap(&truncated, 0x2001_0000).is_none());
        assert!(
            remap(&sample(0x2000_0000), u32::MAX - 10).is_none(),
            "overflow"
        );
        // Numbers a damaged or shaped dump may hold: refused, not wrapped past the check.
        for (lower, count) in [(u64::MAX, 1), (0, u64::MAX), (u64::MAX - 5, u64::MAX)] {
            let mut image = vec![0x19, 0x43, 0x56, 0x54, 0x06, 0x49, 0x47, 0x55];
            let entry = encode_entry(&[(1, (0, 0, 65536)), (2, (1, lower, count))]);
            image.extend((entry.len() as u32).to_le_bytes());
            image.extend(entry);
            assert!(remap(&image, 0x2000_0000).is_none(), "{lower} {count}");
        }
    }

    #[test]
    fn retargets_a_linked_copy_without_touching_the_source() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (src, dst) = (tmp.path().join("criu"), tmp.path().join("restore"));
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join("userns-14.img"), sample(0x2000_0000)).expect("write");
        std::fs::write(src.join("pages-1.img"), b"pages").expect("write");
        link_copy(&src, &dst).expect("link");
        retarget_userns(&dst, 0x2001_0000).expect("retarget");
        assert_eq!(
            std::fs::read(src.join("userns-14.img")).expect("read"),
            sample(0x2000_0000)
        );
        assert_eq!(
            std::fs::read(dst.join("userns-14.img")).expect("read"),
            sample(0x2001_0000)
        );
        assert_eq!(
            std::fs::read(dst.join("pages-1.img")).expect("read"),
            b"pages"
        );
    }
}
