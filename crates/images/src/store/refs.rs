//! The reference index (`refs.json`: `name:tag` → image id), resolving what
//! people type, and removing references and records.

use std::collections::BTreeMap;

use super::fsutil::{LockGuard, read_small, write_atomic};
use super::{ImageRecord, ImageSource, ImageStore};
use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::reference::ImageRef;

const MAX_REFS_BYTES: u64 = 64 << 20;

/// What a text names, before looking it up.
enum Target {
    /// A full id, or the one id a hex prefix matches.
    Id(Digest),
    /// A reference.
    Ref(ImageRef),
}

fn is_id_prefix(text: &str) -> bool {
    (12..=64).contains(&text.len()) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The repository part of an index key (`name:tag` or `name@digest`).
fn repository_of(key: &str) -> Option<String> {
    ImageRef::parse(key).ok().map(|r| r.name)
}

impl ImageStore {
    pub(super) fn read_refs(&self) -> Result<BTreeMap<String, Digest>> {
        let path = self.root.join("refs.json");
        match read_small(&path, MAX_REFS_BYTES)? {
            None => Ok(BTreeMap::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageStoreError::BadImage {
                what: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Rewrites the index atomically; the guard proves the lock is held.
    pub(super) fn write_refs(
        &self,
        _guard: &LockGuard<'_>,
        refs: &BTreeMap<String, Digest>,
    ) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(refs).map_err(|e| ImageStoreError::BadImage {
            what: "refs.json".into(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.tmp_dir(), &self.root.join("refs.json"), &bytes)
    }

    pub(super) fn tag_locked(&self, guard: &LockGuard<'_>, id: &Digest, name: &str) -> Result<()> {
        let key = ImageRef::parse(name)?.key();
        let record = self.read_record(id)?;
        let mut refs = self.read_refs()?;
        if refs.get(&key) == Some(id) {
            return Ok(());
        }
        self.refuse_builtin_name(&refs, &key, &record.source)?;
        refs.insert(key, id.clone());
        self.write_refs(guard, &refs)
    }

    /// Whether `name` may be given to an image of `source`: a name that a built-in image
    /// carries (`default`, `alcove/debian`, …) moves only to another built-in image (a new
    /// recipe of setup's), since every sandbox made without an image gets what `default`
    /// names. `Ok` when the name is free, or already held by an image that is not built in.
    pub fn check_name_assignable(&self, name: &str, source: &ImageSource) -> Result<()> {
        let key = ImageRef::parse(name)?.key();
        self.refuse_builtin_name(&self.read_refs()?, &key, source)
    }

    /// [`Self::check_name_assignable`] for each of `names`, given to image `id`: a name `id`
    /// already carries stays.
    pub(super) fn check_names_for(
        &self,
        names: &[String],
        id: &Digest,
        source: &ImageSource,
    ) -> Result<()> {
        let refs = self.read_refs()?;
        for name in names {
            let key = ImageRef::parse(name)?.key();
            if refs.get(&key) != Some(id) {
                self.refuse_builtin_name(&refs, &key, source)?;
            }
        }
        Ok(())
    }

    fn refuse_builtin_name(
        &self,
        refs: &BTreeMap<String, Digest>,
        key: &str,
        source: &ImageSource,
    ) -> Result<()> {
        let Some(holder) = refs.get(key) else {
            return Ok(());
        };
        if matches!(source, ImageSource::Builtin { .. }) {
            return Ok(());
        }
        match self.read_record(holder) {
            Ok(record) if matches!(record.source, ImageSource::Builtin { .. }) => {
                Err(ImageStoreError::BadReference {
                    reference: key.to_string(),
                    reason: "it is the name of a built-in image (made by setup, and what \
                             sandboxes without an image get): pick another name"
                        .into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The id a text names by id or id prefix, if it is one. A hex text
    /// that matches no id may still be a name (`deadbeefcafe` is a valid
    /// repository), so `None` then.
    fn id_target(&self, text: &str) -> Result<Option<Digest>> {
        let text = match text.strip_prefix("sha256:") {
            // A whole id, or a prefix of one written as the ids are shown (`sha256:3f2a…`).
            Some(hex) if hex.len() < 64 && is_id_prefix(hex) => hex,
            Some(_) => return Ok(Some(text.parse()?)),
            None => text,
        };
        if !is_id_prefix(text) {
            return Ok(None);
        }
        let mut matches = self
            .read_records()?
            .into_iter()
            .filter(|r| r.id.hex().starts_with(text))
            .map(|r| r.id);
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(Some(id)),
            (Some(_), Some(_)) => Err(ImageStoreError::BadReference {
                reference: text.to_string(),
                reason: "the id prefix matches more than one image".into(),
            }),
            (None, _) => Ok(None),
        }
    }

    fn target(&self, text: &str) -> Result<Target> {
        match self.id_target(text)? {
            Some(id) => Ok(Target::Id(id)),
            None => Ok(Target::Ref(ImageRef::parse(text)?)),
        }
    }

    /// The image a digest reference names: one whose manifest digest or id
    /// is the digest, preferring one with a name of the same repository.
    fn by_digest(&self, r: &ImageRef, digest: &Digest, text: &str) -> Result<ImageRecord> {
        let candidates: Vec<ImageRecord> = self
            .list()?
            .into_iter()
            .filter(|rec| rec.manifest_digest.as_ref() == Some(digest) || rec.id == *digest)
            .collect();
        let same_repo = candidates.iter().position(|rec| {
            rec.names
                .iter()
                .any(|n| repository_of(n).as_deref() == Some(r.name.as_str()))
        });
        match same_repo {
            Some(i) => Ok(candidates[i].clone()),
            None => candidates
                .into_iter()
                .next()
                .ok_or_else(|| ImageStoreError::NotFound(text.to_string())),
        }
    }

    pub(super) fn resolve_text(&self, text: &str) -> Result<ImageRecord> {
        let not_found = |e: ImageStoreError| match e {
            ImageStoreError::NotFound(_) => ImageStoreError::NotFound(text.to_string()),
            e => e,
        };
        match self.target(text)? {
            Target::Id(id) => self.get(&id).map_err(not_found),
            Target::Ref(r) => {
                if let Some(d) = &r.digest {
                    return self.by_digest(&r, d, text);
                }
                let refs = self.read_refs()?;
                let id = refs
                    .get(&r.key())
                    .ok_or_else(|| ImageStoreError::NotFound(text.to_string()))?;
                self.get(id).map_err(not_found)
            }
        }
    }

    pub(super) fn remove_locked(
        &self,
        guard: &LockGuard<'_>,
        text: &str,
        untag_only: bool,
    ) -> Result<Vec<Digest>> {
        let mut refs = self.read_refs()?;
        let (id, by_id) = match self.target(text)? {
            Target::Id(id) => {
                self.read_record(&id)
                    .map_err(|_| ImageStoreError::NotFound(text.to_string()))?;
                // By id: every name of the image goes.
                refs.retain(|_, v| *v != id);
                (id, true)
            }
            Target::Ref(r) => match &r.digest {
                Some(d) => {
                    // A digest reference: the image's names in that
                    // repository go.
                    let id = self.by_digest(&r, d, text)?.id;
                    refs.retain(|k, v| {
                        *v != id || repository_of(k).as_deref() != Some(r.name.as_str())
                    });
                    (id, false)
                }
                None => {
                    let id = refs
                        .remove(&r.key())
                        .ok_or_else(|| ImageStoreError::NotFound(text.to_string()))?;
                    (id, false)
                }
            },
        };
        self.write_refs(guard, &refs)?;
        let still_named = refs.values().any(|v| *v == id);
        if untag_only || (still_named && !by_id) {
            return Ok(Vec::new());
        }
        self.delete_record(&id)?;
        Ok(vec![id])
    }
}
