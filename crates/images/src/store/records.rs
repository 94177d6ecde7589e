//! Image records (`images/sha256/<id>.json`) and the OCI image config
//! whose digest is an image's id.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::image::{
    Arch, ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};

use super::fsutil::{LockGuard, read_small, write_atomic};
use super::{ImageRecord, ImageSource, ImageStore, LayerRecord, RunConfig, ServiceConfig};
use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};

/// Label of the built-in images' services (JSON list of [`ServiceConfig`]).
pub const SERVICES_LABEL: &str = "org.alcove.services";
/// Label of a built-in image's recipe hash: two recipes never share an id.
pub const RECIPE_LABEL: &str = "org.alcove.recipe_sha256";

/// Config blobs and records larger than this are refused.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl RunConfig {
    /// The `Env` entries usable as environment variables, as `(name, value)`
    /// in order: an entry without `=`, with a name that is not a variable
    /// name, or with a NUL byte (an image's config is untrusted) is left out.
    pub fn env_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, v)| {
                k.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !v.contains('\0')
            })
    }

    /// The run configuration of an OCI image config (a pulled or imported
    /// config blob): `Env` in order, TCP `ExposedPorts` (UDP and malformed
    /// ones left out), and the services of the `org.alcove.services` label.
    pub fn from_oci(config: &ImageConfiguration) -> RunConfig {
        let Some(c) = config.config() else {
            return RunConfig::default();
        };
        let non_empty = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).cloned();
        let mut exposed_ports: Vec<u16> = c
            .exposed_ports()
            .iter()
            .flatten()
            .filter_map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                (proto == "tcp").then(|| port.parse::<u16>().ok()).flatten()
            })
            .filter(|p| *p != 0)
            .collect();
        // The config holds them as a map: no order to keep.
        exposed_ports.sort_unstable();
        exposed_ports.dedup();
        let services = c
            .labels()
            .as_ref()
            .and_then(|l| l.get(SERVICES_LABEL))
            .and_then(|s| serde_json::from_str::<Vec<ServiceConfig>>(s).ok())
            .unwrap_or_default();
        RunConfig {
            env: c.env().clone().unwrap_or_default(),
            working_dir: non_empty(c.working_dir()),
            user: non_empty(c.user()),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            exposed_ports,
            services,
        }
    }
}

/// The OCI config of an image the store makes itself, as canonical JSON
/// (sorted keys, no creation time): the same image gives the same id.
fn oci_config_bytes(
    layers: &[LayerRecord],
    config: &RunConfig,
    source: &ImageSource,
) -> Result<Vec<u8>> {
    let bad = |e: &dyn std::fmt::Display| ImageStoreError::BadImage {
        what: "image config".into(),
        reason: e.to_string(),
    };
    let mut c = ConfigBuilder::default();
    if !config.env.is_empty() {
        c = c.env(config.env.clone());
    }
    if let Some(w) = &config.working_dir {
        c = c.working_dir(w.clone());
    }
    if let Some(u) = &config.user {
        c = c.user(u.clone());
    }
    if !config.entrypoint.is_empty() {
        c = c.entrypoint(config.entrypoint.clone());
    }
    if !config.cmd.is_empty() {
        c = c.cmd(config.cmd.clone());
    }
    if !config.exposed_ports.is_empty() {
        c = c.exposed_ports(
            config
                .exposed_ports
                .iter()
                .map(|p| format!("{p}/tcp"))
                .collect::<Vec<_>>(),
        );
    }
    let mut labels = HashMap::new();
    if !config.services.is_empty() {
        labels.insert(
            SERVICES_LABEL.to_string(),
            serde_json::to_string(&config.services).map_err(|e| bad(&e))?,
        );
    }
    if let ImageSource::Builtin { recipe_sha256 } = source {
        labels.insert(RECIPE_LABEL.to_string(), recipe_sha256.clone());
    }
    if !labels.is_empty() {
        c = c.labels(labels);
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|l| l.diff_id.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|e| bad(&e))?;
    let image = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(c.build().map_err(|e| bad(&e))?)
        .rootfs(rootfs)
        .build()
        .map_err(|e| bad(&e))?;
    let value = serde_json::to_value(&image).map_err(|e| bad(&e))?;
    serde_json::to_vec(&canonical(value)).map_err(|e| bad(&e))
}

/// Sorts object keys recursively (oci-spec serializes maps from a
/// `HashMap`, whose order changes from run to run).
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical).collect())
        }
        v => v,
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl ImageStore {
    fn record_path(&self, id: &Digest) -> PathBuf {
        self.root
            .join("images/sha256")
            .join(format!("{}.json", id.hex()))
    }

    /// The stored record (names not filled).
    pub(super) fn read_record(&self, id: &Digest) -> Result<ImageRecord> {
        let path = self.record_path(id);
        let bytes = read_small(&path, MAX_CONFIG_BYTES)?
            .ok_or_else(|| ImageStoreError::NotFound(id.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageStoreError::BadImage {
            what: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Every stored record (names not filled); unreadable ones are skipped
    /// with a warning (they cannot be used anyway).
    pub(super) fn read_records(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.join("images/sha256");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(ImageStoreError::io("read", &dir))? {
            let entry = entry.map_err(ImageStoreError::io("read", &dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok())
            else {
                continue;
            };
            match self.read_record(&id) {
                Ok(r) => out.push(r),
                Err(ImageStoreError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "unreadable image record skipped")
                }
            }
        }
        Ok(out)
    }

    pub(super) fn delete_record(&self, id: &Digest) -> Result<()> {
        let path = self.record_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageStoreError::io("remove", path)(e)),
        }
    }

    /// Drops records whose layers are gone and references to missing
    /// records (run at open).
    pub(super) fn drop_broken_records(&self, guard: &LockGuard<'_>) -> Result<()> {
        for record in self.read_records()? {
            if let Some(l) = record.layers.iter().find(|l| !self.has_layer(&l.diff_id)) {
                tracing::warn!(image = %record.id, layer = %l.diff_id, "image record dropped: its layer is missing");
                self.delete_record(&record.id)?;
            }
        }
        let mut refs = self.read_refs()?;
        let before = refs.len();
        refs.retain(|_, id| self.record_path(id).is_file());
        if refs.len() != before {
            self.write_refs(guard, &refs)?;
        }
        Ok(())
    }

    fn check_layers(&self, layers: &[LayerRecord]) -> Result<()> {
        match layers.iter().find(|l| !self.has_layer(&l.diff_id)) {
            Some(l) => Err(ImageStoreError::BadImage {
                what: "image".into(),
                reason: format!("layer {} is not unpacked", l.diff_id),
            }),
            None => Ok(()),
        }
    }

    /// Writes the record of `id` unless it exists, then tags `names`.
    fn store_record(
        &self,
        guard: &LockGuard<'_>,
        record: ImageRecord,
        names: &[String],
    ) -> Result<ImageRecord> {
        let id = record.id.clone();
        // Every name is checked before anything is written or tagged.
        self.check_names_for(names, &id, &record.source)?;
        let path = self.record_path(&id);
        let to_write = if !path.is_file() {
            Some(record)
        } else {
            // The same image again through another manifest (another format
            // or platform list) or another way in: it is now known by the
            // latest (a built-in stays a built-in).
            match self.get(&id) {
                Ok(mut existing) if !matches!(existing.source, ImageSource::Builtin { .. }) => {
                    let newer_manifest = record.manifest_digest.is_some()
                        && existing.manifest_digest != record.manifest_digest;
                    if newer_manifest || existing.source != record.source {
                        if newer_manifest {
                            existing.manifest_digest = record.manifest_digest;
                        }
                        existing.source = record.source;
                        Some(existing)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some(record) = to_write {
            let bytes =
                serde_json::to_vec_pretty(&record).map_err(|e| ImageStoreError::BadImage {
                    what: "image record".into(),
                    reason: e.to_string(),
                })?;
            write_atomic(&self.tmp_dir(), &path, &bytes)?;
        }
        for name in names {
            self.tag_locked(guard, &id, name)?;
        }
        self.get(&id)
    }

    pub(super) fn commit_locked(
        &self,
        guard: &LockGuard<'_>,
        layers: Vec<LayerRecord>,
        config: RunConfig,
        source: ImageSource,
        manifest_digest: Option<Digest>,
        names: &[String],
    ) -> Result<ImageRecord> {
        self.check_layers(&layers)?;
        // Names are checked before anything is written.
        for name in names {
            crate::ImageRef::parse(name)?;
        }
        let bytes = oci_config_bytes(&layers, &config, &source)?;
        let id = self.put_blob(&bytes)?;
        let record = ImageRecord {
            id,
            manifest_digest,
            layers,
            config,
            source,
            created_at: now_rfc3339(),
            names: Vec::new(),
        };
        self.store_record(guard, record, names)
    }

    pub(super) fn commit_pulled_locked(
        &self,
        guard: &LockGuard<'_>,
        config_blob: &Digest,
        layers: Vec<LayerRecord>,
        manifest_digest: Option<Digest>,
        source: ImageSource,
        names: &[String],
    ) -> Result<ImageRecord> {
        let bytes = self.read_blob(config_blob, MAX_CONFIG_BYTES)?;
        let oci: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| ImageStoreError::BadImage {
                what: format!("image config {config_blob}"),
                reason: e.to_string(),
            })?;
        let layer_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        if *oci.rootfs().diff_ids() != layer_ids {
            return Err(ImageStoreError::BadImage {
                what: format!("image config {config_blob}"),
                reason: format!(
                    "rootfs.diff_ids {:?} are not the layers' diff ids {layer_ids:?}",
                    oci.rootfs().diff_ids()
                ),
            });
        }
        self.check_layers(&layers)?;
        for name in names {
            crate::ImageRef::parse(name)?;
        }
        let record = ImageRecord {
            id: config_blob.clone(),
            manifest_digest,
            layers,
            config: RunConfig::from_oci(&oci),
            source,
            created_at: now_rfc3339(),
            names: Vec::new(),
        };
        self.store_record(guard, record, names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_round_trips_through_the_oci_config() {
        let config = RunConfig {
            env: vec!["B=2".into(), "A=1".into()],
            working_dir: Some("/srv".into()),
            user: Some("1000:1000".into()),
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            exposed_ports: vec![80, 8080],
            services: vec![ServiceConfig {
                name: "sshd".into(),
                command: vec!["/usr/sbin/sshd".into(), "-D".into()],
            }],
        };
        let a = oci_config_bytes(&[], &config, &ImageSource::Build).expect("config");
        let b = oci_config_bytes(&[], &config, &ImageSource::Build).expect("config");
        assert_eq!(a, b, "the same image must give the same id");
        let oci: ImageConfiguration = serde_json::from_slice(&a).expect("parse");
        assert_eq!(RunConfig::from_oci(&oci), config);
        let text = String::from_utf8(a).expect("utf8");
        assert!(
            text.contains(r#""ExposedPorts":{"80/tcp":{},"8080/tcp":{}}"#),
            "{text}"
        );
        assert!(text.contains(r#""architecture":"amd64""#), "{text}");
    }

    #[test]
    fn from_oci_skips_udp_and_malformed_ports() {
        let json = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Env":["Z=1","A=2"],"ExposedPorts":{"53/udp":{},"443":{},"x/tcp":{},"22/tcp":{}},
            "WorkingDir":"","Cmd":["sh"]}}"#;
        let oci: ImageConfiguration = serde_json::from_str(json).expect("parse");
        let rc = RunConfig::from_oci(&oci);
        assert_eq!(rc.env, vec!["Z=1", "A=2"]);
        assert_eq!(rc.exposed_ports, vec![22, 443]);
        assert_eq!(rc.working_dir, None);
        assert_eq!(rc.cmd, vec!["sh"]);
    }
}
