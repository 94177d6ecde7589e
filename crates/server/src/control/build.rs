//! Image builds: a Dockerfile (or the SDKs' image DSL, which renders one)
//! run step by step against the store.
//!
//! * `FROM` takes a stored image (pulling a registry reference the store
//!   lacks) or an earlier stage.
//! * `RUN` runs in a builder sandbox made from the layers so far, with the
//!   build's network policy; what it wrote over its root (its overlay upper
//!   directory, less what the runtime mounted there) becomes the next layer.
//! * `COPY`/`ADD` copy from the context (or `--from` a stage) into a new
//!   layer without a sandbox; `WORKDIR` makes its directory the same way.
//! * The rest only change the image config.
//!
//! Every step is cached under a key chained from its parent's key, its
//! instruction (after substitution, with the build args it sees) and, for a
//! copy, the digest of the files it copies; a hit restores the state after
//! the step (its layers and config) without doing anything, so an unchanged
//! rebuild costs a few file reads per step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alcove_images::{ImageRef, ImageSource, ImageStoreError, LayerRecord, RunConfig};
use alcove_wire::image::{ImageInfo, ImageProgressEvent};
use alcove_wire::sandbox::{CreateSandboxRequest, NetworkConfig, ResourcesRequest};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc::Sender;

use super::ControlError;
use super::images::image_info;
use super::services::Control;
use super::state::TerminationReason;
use crate::images::ResolvedImage;
use crate::images::context::{self, ContextError, CopyMode, MAX_CONTEXT_BYTES};
use crate::images::dockerfile::{self, Command, CopySpec, Instruction, Step};

/// What the runtime mounts over a sandbox's root: never part of a layer.
pub(super) const MOUNTED: &[&str] = &[
    ".alcove",
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Lines of a failing step's output quoted in its error.
const TAIL_LINES: usize = 40;

/// How a build is made.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The new image's reference (`name:tag`).
    pub name: String,
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    /// `--build-arg`s.
    pub build_args: Vec<(String, String)>,
    /// Ignore the step cache.
    pub no_cache: bool,
    /// Whether `RUN` steps reach the internet.
    pub allow_internet: bool,
}

/// The image after a step: its layers and config. Also what the cache keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    layers: Vec<LayerRecord>,
    config: RunConfig,
}

/// One stage's progress.
#[derive(Debug, Clone, Default)]
struct StageState {
    state: State,
    key: String,
    /// Declared ARGs and their values.
    args: HashMap<String, String>,
}

fn chain(parent: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

fn invalid(reason: impl Into<String>) -> ControlError {
    ControlError::InvalidArgument {
        field: "dockerfile",
        reason: reason.into(),
    }
}

fn from_context(e: ContextError) -> ControlError {
    match e {
        ContextError::Invalid(m) => invalid(m),
        ContextError::Io { op, path, source } => {
            ControlError::Image(ImageStoreError::Io { op, path, source })
        }
    }
}

fn store_io(e: std::io::Error) -> ControlError {
    ControlError::Image(ImageStoreError::Io {
        op: "building in",
        path: "the store's work directory".into(),
        source: e,
    })
}

/// One running build.
struct Build<'a> {
    control: &'a Control,
    namespace: String,
    opts: BuildOptions,
    progress: Option<Sender<ImageProgressEvent>>,
    /// `<store>/tmp/<pid>.build.<n>`: the context and new layers' trees.
    work: PathBuf,
    cache_dir: PathBuf,
    step: u32,
    total: u32,
    stages: Vec<(Option<String>, StageState)>,
    made: u32,
    /// This build's number (what it holds against collections).
    id: u64,
}

/// What making a new layer's tree needs (see `Build::new_layer`).
struct NewLayer {
    fs: PathBuf,
    layers: Vec<PathBuf>,
    store: alcove_images::ImageStore,
    limits: alcove_images::unpack::UnpackLimits,
}

/// Numbers builds.
static NEXT_BUILD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Control {
    /// Builds an image from the context archive at `context` (removed by the
    /// caller); events go to `progress` as the steps run.
    pub async fn build_image(
        &self,
        namespace: &str,
        context: PathBuf,
        opts: BuildOptions,
        progress: Option<Sender<ImageProgressEvent>>,
    ) -> Result<ImageInfo, ControlError> {
        ImageRef::parse(&opts.name)?;
        self.refuse_builtin_name(&opts.name).await?;
        let store_root = self.ctx.images.store().root().to_path_buf();
        let work = self.ctx.images.store().tmp_path();
        let mut build = Build {
            control: self,
            namespace: namespace.to_string(),
            opts,
            progress,
            cache_dir: store_root.join("build-cache"),
            work,
            step: 0,
            total: 0,
            stages: Vec::new(),
            made: 0,
            id: NEXT_BUILD.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let result = match self.ctx.images.store().work_guard() {
            Ok(_work) => build.run(&context).await,
            Err(e) => Err(e.into()),
        };
        self.ctx.images.build_done(build.id);
        let work = build.work.clone();
        let _ = tokio::task::spawn_blocking(move || remove_tree(&work)).await;
        if let Ok(info) = &result {
            self.ctx.share_image(&info.id).await;
        }
        result
    }
}

/// Removes a build's work tree: its layer trees and context are the user's,
/// of any depth, and may hold read-only dirs (made writable on the way).
fn remove_tree(dir: &Path) {
    if let Err(e) = alcove_runtime::remove_tree::remove_tree(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "removing a build's work tree");
    }
}

impl Build<'_> {
    async fn emit(&self, event: ImageProgressEvent) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(event).await;
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
    ) -> Result<T, ControlError> {
        super::images::blocking(work).await
    }

    async fn run(&mut self, archive: &Path) -> Result<ImageInfo, ControlError> {
        let ctx_dir = self.work.join("context");
        let (a, c, cache) = (
            archive.to_path_buf(),
            ctx_dir.clone(),
            self.cache_dir.clone(),
        );
        let dockerfile_rel = context::relative(&self.opts.dockerfile).map_err(from_context)?;
        let text = self
            .blocking(move || {
                for d in [&c, &cache] {
                    std::fs::create_dir_all(d).map_err(store_io)?;
                }
                context::extract(&a, &c, MAX_CONTEXT_BYTES).map_err(from_context)?;
                let path = c.join(&dockerfile_rel);
                let meta = std::fs::symlink_metadata(&path).map_err(|_| {
                    invalid(format!("the context has no {}", dockerfile_rel.display()))
                })?;
                if !meta.is_file() || meta.len() > (1 << 20) {
                    return Err(invalid(format!(
                        "{} is not a Dockerfile",
                        dockerfile_rel.display()
                    )));
                }
                std::fs::read_to_string(&path).map_err(|_| invalid("the Dockerfile is not UTF-8"))
            })
            .await?;
        let file = dockerfile::parse(&text).map_err(|e| invalid(e.to_string()))?;
        self.total = u32::try_from(file.step_count()).unwrap_or(u32::MAX);
        let user_args: HashMap<String, String> = self.opts.build_args.iter().cloned().collect();
        // Global ARGs: usable in FROM lines.
        let mut global = HashMap::new();
        let mut global_key = String::from("alcove-build-v1");
        for arg in &file.global_args {
            let value = user_args
                .get(&arg.name)
                .cloned()
                .or_else(|| arg.default.clone())
                .unwrap_or_default();
            global_key = chain(&global_key, &["ARG", &arg.name, &value]);
            self.step += 1;
            self.emit(ImageProgressEvent::Step {
                number: self.step,
                total: self.total,
                instruction: arg.text.clone(),
                cached: !self.opts.no_cache,
            })
            .await;
            global.insert(arg.name.clone(), value);
        }
        for stage in &file.stages {
            let lookup = |name: &str| global.get(name).cloned();
            let base = dockerfile::substitute(&stage.base, stage.from.line, &lookup)
                .map_err(|e| invalid(e.to_string()))?;
            let mut st = self.from(&base, &stage.from).await?;
            st.key = chain(&global_key, &[&st.key]);
            for step in &stage.steps {
                st = self.step(st, step, &global, &user_args, &ctx_dir).await?;
            }
            self.stages.push((stage.name.clone(), st));
        }
        let Some((_, last)) = self.stages.last() else {
            return Err(invalid("the Dockerfile has no stage"));
        };
        let state = last.state.clone();
        let images = self.control.ctx.images.clone();
        let name = self.opts.name.clone();
        let record = self
            .blocking(move || {
                images
                    .store()
                    .commit_image(
                        state.layers,
                        state.config,
                        ImageSource::Build,
                        None,
                        &[name],
                    )
                    .map_err(ControlError::from)
            })
            .await?;
        Ok(image_info(&record, None))
    }

    /// The state a stage starts from: an earlier stage, or an image.
    async fn from(&mut self, base: &str, step: &Step) -> Result<StageState, ControlError> {
        self.step += 1;
        let wanted = base.to_ascii_lowercase();
        if let Some((_, st)) = self
            .stages
            .iter()
            .find(|(n, _)| n.as_deref() == Some(wanted.as_str()))
        {
            let st = st.clone();
            self.emit_step(step, !self.opts.no_cache).await;
            return Ok(StageState {
                args: HashMap::new(),
                ..st
            });
        }
        let images = self.control.ctx.images.clone();
        let text = base.to_string();
        let found = tokio::task::spawn_blocking(move || images.store().resolve(&text))
            .await
            .map_err(|e| store_io(std::io::Error::other(e.to_string())))?;
        let (record, cached) = match found {
            Ok(r) => (r, true),
            Err(ImageStoreError::NotFound(_))
                if ImageRef::parse(base).is_ok_and(|r| r.registry().is_some()) =>
            {
                let record = self
                    .control
                    .ctx
                    .images
                    .pull(alcove_images::pull::PullRequest {
                        reference: base.to_string(),
                        progress: self.progress.clone(),
                        ..Default::default()
                    })
                    .await?;
                (record, false)
            }
            Err(ImageStoreError::NotFound(_)) => {
                return Err(ControlError::NotFound {
                    kind: "image",
                    id: base.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        self.emit_step(step, cached && !self.opts.no_cache).await;
        Ok(StageState {
            key: chain("", &["FROM", record.id.as_str()]),
            state: State {
                layers: record.layers,
                config: RunConfig {
                    services: Vec::new(),
                    ..record.config
                },
            },
            args: HashMap::new(),
        })
    }

    async fn emit_step(&self, step: &Step, cached: bool) {
        self.emit(ImageProgressEvent::Step {
            number: self.step,
            total: self.total,
            instruction: step.text.clone(),
            cached,
        })
        .await;
    }

    /// Keeps a state's layers from collections while the build runs.
    fn hold(&self, state: &State) {
        for layer in &state.layers {
            self.control.ctx.images.hold_for_build(self.id, layer);
        }
    }

    fn cached(&self, key: &str) -> Option<State> {
        if self.opts.no_cache {
            return None;
        }
        let text = std::fs::read(self.cache_dir.join(key)).ok()?;
        let state: State = serde_json::from_slice(&text).ok()?;
        let store = self.control.ctx.images.store();
        state
            .layers
            .iter()
            .all(|l| store.has_layer(&l.diff_id))
            .then_some(state)
    }

    fn remember(&self, key: &str, state: &State) {
        let Ok(text) = serde_json::to_vec(state) else {
            return;
        };
        let tmp = self
            .cache_dir
            .join(format!("{key}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, self.cache_dir.join(key));
        }
    }

    /// Runs one instruction of a stage.
    async fn step(
        &mut self,
        mut st: StageState,
        step: &Step,
        global: &HashMap<String, String>,
        user_args: &HashMap<String, String>,
        ctx_dir: &Path,
    ) -> Result<StageState, ControlError> {
        self.step += 1;
        // Substitution sees the image's ENV over the stage's ARGs.
        let env: HashMap<String, String> = st
            .state
            .config
            .env_vars()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = st.args.clone();
        let lookup = move |name: &str| env.get(name).or_else(|| args.get(name)).cloned();
        let sub = |w: &str| {
            dockerfile::substitute(w, step.line, &lookup).map_err(|e| invalid(e.to_string()))
        };
        // What the step's outcome depends on besides its parent.
        let mut key_parts: Vec<String> = vec![step.text.clone()];
        match &step.instruction {
            Instruction::Arg(decl) => {
                // A default that does not substitute is a 400 naming its
                // line, not silently replaced by the global value.
                let given = match user_args.get(&decl.name) {
                    Some(value) => Some(value.clone()),
                    None => decl.default.as_deref().map(&sub).transpose()?,
                };
                let value = given
                    .or_else(|| global.get(&decl.name).cloned())
                    .unwrap_or_default();
                st.args.insert(decl.name.clone(), value.clone());
                check_environment(&st.state.config.env, &st.args, step.line)?;
                key_parts.push(value);
            }
            Instruction::Run(_) => {
                // The build args a RUN sees are its environment.
                let mut args: Vec<_> = st.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                args.sort();
                key_parts.extend(args);
                key_parts.push(format!("internet={}", self.opts.allow_internet));
            }
            Instruction::Copy(spec) | Instruction::Add(spec) => {
                key_parts.push(self.copy_digest(spec, ctx_dir, &sub).await?);
                key_parts.push(st.state.config.working_dir.clone().unwrap_or_default());
            }
            _ => {}
        }
        let parts: Vec<&str> = key_parts.iter().map(String::as_str).collect();
        let key = chain(&st.key, &parts);
        if let Some(state) = self.cached(&key) {
            self.hold(&state);
            self.emit_step(step, true).await;
            return Ok(StageState {
                state,
                key,
                args: st.args,
            });
        }
        self.emit_step(step, false).await;
        let mut state = st.state.clone();
        match &step.instruction {
            Instruction::From { .. } | Instruction::Arg(_) => {}
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    let v = sub(v)?;
                    state
                        .config
                        .env
                        .retain(|kv| kv.split_once('=').is_none_or(|(name, _)| name != k));
                    state.config.env.push(format!("{k}={v}"));
                }
                check_environment(&state.config.env, &st.args, step.line)?;
            }
            Instruction::Workdir(dir) => {
                let dir = sub(dir)?;
                let base = state
                    .config
                    .working_dir
                    .clone()
                    .unwrap_or_else(|| "/".into());
                let abs = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", base.trim_end_matches('/'))
                };
                let rel = context::relative(&abs).map_err(from_context)?;
                let layer = self.dir_layer(&state, rel.clone()).await?;
                state.layers.extend(layer);
                state.config.working_dir = Some(format!("/{}", rel.display()));
            }
            Instruction::User(user) => state.config.user = Some(sub(user)?),
            Instruction::Entrypoint(cmd) => {
                state.config.entrypoint = command_words(cmd);
                // As Docker does: a new ENTRYPOINT drops an inherited CMD.
                state.config.cmd.clear();
            }
            Instruction::Cmd(cmd) => state.config.cmd = command_words(cmd),
            Instruction::Expose(ports) => {
                for p in ports {
                    let p = sub(p)?;
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let port: u16 = num.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        invalid(format!("line {}: EXPOSE {p} is not a port", step.line))
                    })?;
                    if proto.eq_ignore_ascii_case("tcp")
                        && !state.config.exposed_ports.contains(&port)
                    {
                        state.config.exposed_ports.push(port);
                    }
                }
            }
            Instruction::Copy(spec) | Instruction::Add(spec) => {
                let layer = self.copy_layer(&state, spec, ctx_dir, &sub).await?;
                state.layers.push(layer);
            }
            Instruction::Run(cmd) => {
                let layer = self.run_step(&state, cmd, &st.args, step).await?;
                state.layers.push(layer);
            }
        }
        self.hold(&state);
        self.remember(&key, &state);
        Ok(StageState {
            state,
            key,
            args: st.args,
        })
    }

    /// Where a copy's sources come from: the context, or a stage's merged
    /// layers (`--from`), mounted read-only for the copy's duration.
    async fn source_root(
        &self,
        spec: &CopySpec,
        ctx_dir: &Path,
    ) -> Result<(PathBuf, Option<PathBuf>), ControlError> {
        let Some(from) = &spec.from else {
            return Ok((ctx_dir.to_path_buf(), None));
        };
        let wanted = from.to_ascii_lowercase();
        let layers: Vec<PathBuf> = if let Some((_, st)) = self
            .stages
            .iter()
            .enumerate()
            .find(|(i, (n, _))| n.as_deref() == Some(wanted.as_str()) || i.to_string() == wanted)
            .map(|(_, s)| s)
        {
            st.state
                .layers
                .iter()
                .map(|l| self.control.ctx.images.store().layer_dir(&l.diff_id))
                .collect()
        } else {
            let record = self.control.ctx.images.store().resolve(from).map_err(|_| {
                invalid(format!("COPY --from={from}: no such stage or stored image"))
            })?;
            record
                .layers
                .iter()
                .map(|l| self.control.ctx.images.store().layer_dir(&l.diff_id))
                .collect()
        };
        match layers.as_slice() {
            [] => Err(invalid(format!(
                "COPY --from={from}: the stage has no files"
            ))),
            [one] => Ok((one.clone(), None)),
            many => {
                let mnt = self.work.join(format!("from-{}", self.step));
                std::fs::create_dir_all(&mnt).map_err(store_io)?;
                let lowers: Vec<String> =
                    many.iter().rev().map(|p| p.display().to_string()).collect();
                let options = format!("lowerdir={}", lowers.join(":"));
                nix::mount::mount(
                    Some("overlay"),
                    &mnt,
                    Some("overlay"),
                    nix::mount::MsFlags::MS_RDONLY
                        | nix::mount::MsFlags::MS_NOSUID
                        | nix::mount::MsFlags::MS_NODEV,
                    Some(options.as_str()),
                )
                .map_err(|e| store_io(std::io::Error::from(e)))?;
                Ok((mnt.clone(), Some(mnt)))
            }
        }
    }

    async fn copy_digest(
        &self,
        spec: &CopySpec,
        ctx_dir: &Path,
        sub: &(dyn Fn(&str) -> Result<String, ControlError> + Sync),
    ) -> Result<String, ControlError> {
        if let Some(from) = &spec.from {
            // A stage's content is fixed by its key; a stored image by its id.
            let wanted = from.to_ascii_lowercase();
            if let Some((_, st)) = self
                .stages
                .iter()
                .find(|(n, _)| n.as_deref() == Some(wanted.as_str()))
            {
                return Ok(st.key.clone());
            }
            let record = self.control.ctx.images.store().resolve(from).map_err(|_| {
                invalid(format!("COPY --from={from}: no such stage or stored image"))
            })?;
            return Ok(record.id.to_string());
        }
        let patterns: Vec<String> = spec
            .sources
            .iter()
            .map(|s| sub(s))
            .collect::<Result<_, _>>()?;
        let root = ctx_dir.to_path_buf();
        let extra = format!("{:?}{:?}", spec.chown, spec.chmod);
        self.blocking(move || {
            let mut paths = Vec::new();
            for p in &patterns {
                paths.extend(context::resolve_sources(&root, p).map_err(from_context)?);
            }
            let d = context::digest_sources(&paths).map_err(from_context)?;
            Ok(format!("{d}{extra}"))
        })
        .await
    }

    /// A new layer holding the copied files.
    async fn copy_layer(
        &mut self,
        state: &State,
        spec: &CopySpec,
        ctx_dir: &Path,
        sub: &(dyn Fn(&str) -> Result<String, ControlError> + Sync),
    ) -> Result<LayerRecord, ControlError> {
        let patterns: Vec<String> = spec
            .sources
            .iter()
            .map(|s| sub(s))
            .collect::<Result<_, _>>()?;
        let dest_text = sub(&spec.dest)?;
        let workdir = state
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let dest_abs = if dest_text.starts_with('/') {
            dest_text.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest_text)
        };
        let dest_is_dir = dest_text.ends_with('/') || patterns.len() > 1;
        let how = CopyMode {
            owner: spec.chown.as_deref().map(parse_chown).transpose()?,
            mode: spec
                .chmod
                .as_deref()
                .map(|m| {
                    u32::from_str_radix(m, 8)
                        .map_err(|_| invalid(format!("--chmod={m} is not an octal mode")))
                })
                .transpose()?,
        };
        let (root, mounted) = self.source_root(spec, ctx_dir).await?;
        let NewLayer {
            fs,
            layers,
            store,
            limits,
        } = self.new_layer(state);
        let result = self
            .blocking(move || {
                std::fs::create_dir_all(&fs).map_err(store_io)?;
                let dest_rel = context::relative(&dest_abs).map_err(from_context)?;
                let mut sources = Vec::new();
                for p in &patterns {
                    sources.extend(context::resolve_sources(&root, p).map_err(from_context)?);
                }
                let single_file = sources.len() == 1
                    && std::fs::symlink_metadata(&sources[0]).is_ok_and(|m| !m.is_dir());
                if single_file && !dest_is_dir {
                    if let Some(parent) = dest_rel.parent() {
                        context::ensure_dir_in_layer(&fs, &layers, parent).map_err(from_context)?;
                    }
                    context::copy_tree(&sources[0], &fs.join(&dest_rel), how)
                        .map_err(from_context)?;
                } else {
                    context::ensure_dir_in_layer(&fs, &layers, &dest_rel).map_err(from_context)?;
                    for s in &sources {
                        let is_dir = std::fs::symlink_metadata(s).is_ok_and(|m| m.is_dir());
                        let target = if is_dir {
                            fs.join(&dest_rel)
                        } else {
                            fs.join(&dest_rel).join(s.file_name().unwrap_or_default())
                        };
                        if is_dir {
                            // The directory's contents, not the directory.
                            for entry in std::fs::read_dir(s).map_err(store_io)?.flatten() {
                                context::copy_tree(
                                    &entry.path(),
                                    &target.join(entry.file_name()),
                                    how,
                                )
                                .map_err(from_context)?;
                            }
                        } else {
                            context::copy_tree(s, &target, how).map_err(from_context)?;
                        }
                    }
                }
                store
                    .layer_from_dir(&fs, &limits)
                    .map_err(ControlError::from)
            })
            .await;
        if let Some(mnt) = mounted {
            let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
        }
        result
    }

    /// Where the next layer's tree is made, with what making it needs: the
    /// unpacked layers so far (to read the image's merged view), the store and
    /// its limits.
    fn new_layer(&mut self, state: &State) -> NewLayer {
        self.made += 1;
        let store = self.control.ctx.images.store().clone();
        NewLayer {
            fs: self.work.join(format!("layer-{}", self.made)).join("fs"),
            layers: state
                .layers
                .iter()
                .map(|l| store.layer_dir(&l.diff_id))
                .collect(),
            limits: self.control.ctx.images.limits(),
            store,
        }
    }

    /// A layer creating directory `rel` (nothing when the image has it).
    async fn dir_layer(
        &mut self,
        state: &State,
        rel: PathBuf,
    ) -> Result<Option<LayerRecord>, ControlError> {
        let NewLayer {
            fs,
            layers,
            store,
            limits,
        } = self.new_layer(state);
        self.blocking(move || {
            let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
            if parts.is_empty()
                || alcove_runtime::layer::lookup_in_layers(&layers, &parts)
                    .is_some_and(|m| m.is_dir())
            {
                return Ok(None);
            }
            std::fs::create_dir_all(&fs).map_err(store_io)?;
            context::ensure_dir_in_layer(&fs, &layers, &rel).map_err(from_context)?;
            store
                .layer_from_dir(&fs, &limits)
                .map(Some)
                .map_err(ControlError::from)
        })
        .await
    }

    /// Runs a `RUN` step in a builder sandbox; its writes become a layer.
    async fn run_step(
        &mut self,
        state: &State,
        cmd: &Command,
        args: &HashMap<String, String>,
        step: &Step,
    ) -> Result<LayerRecord, ControlError> {
        let store = self.control.ctx.images.store().clone();
        let env: Vec<(String, String)> = state
            .config
            .env_vars()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let resolved = ResolvedImage {
            image: alcove_runtime::image::Image {
                name: format!("build:{}", self.opts.name),
                id: String::new(),
                layers: state
                    .layers
                    .iter()
                    .map(|l| store.layer_dir(&l.diff_id))
                    .collect(),
                env,
                services: Vec::new(),
                working_dir: state.config.working_dir.clone(),
                user: state.config.user.clone(),
            },
            run: RunConfig::default(),
            pinned: format!("build:{}", self.opts.name),
        };
        let req = CreateSandboxRequest {
            resources: Some(ResourcesRequest {
                cpus: Some(self.control.ctx.cfg.host.cpus.min(2.0)),
                memory_mb: Some(2048),
                ..Default::default()
            }),
            timeout_secs: Some(3600),
            network: Some(NetworkConfig {
                allow_internet_access: self.opts.allow_internet,
                allow_out: Vec::new(),
                deny_out: Vec::new(),
            }),
            ..Default::default()
        };
        let outcome = self
            .control
            .sandboxes
            .create_from_image(&self.namespace, req, resolved, Duration::from_secs(120))
            .await?;
        let id = outcome.record.id.clone();
        let result = self.run_in(&id, cmd, args, step).await;
        let _ = self
            .control
            .sandboxes
            .delete(
                Some(&self.namespace),
                id.as_str(),
                TerminationReason::Deleted,
            )
            .await;
        result
    }

    async fn run_in(
        &self,
        id: &alcove_runtime::SandboxId,
        cmd: &Command,
        args: &HashMap<String, String>,
        step: &Step,
    ) -> Result<LayerRecord, ControlError> {
        let handle =
            self.control
                .ctx
                .handle_of(id)
                .ok_or_else(|| ControlError::OperationFailed {
                    id: id.to_string(),
                    op: "build",
                    reason: "the builder sandbox did not start".into(),
                })?;
        let (program, argv) = match cmd {
            Command::Shell(text) => ("/bin/sh".to_string(), vec!["-c".to_string(), text.clone()]),
            Command::Exec(words) => match words.split_first() {
                Some((p, rest)) => (p.clone(), rest.to_vec()),
                None => return Err(invalid(format!("line {}: RUN has no command", step.line))),
            },
        };
        let body = serde_json::json!({ "command": program, "args": argv, "env": args });
        let req = super::Upstream::of(&handle)
            .agent_request(http::Method::POST, "/api/v1/processes/run")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(super::AgentBody::new(http_body_util::Full::new(
                bytes::Bytes::from(body.to_string()),
            )))
            .map_err(|e| store_io(std::io::Error::other(e.to_string())))?;
        let failed = |reason: String| ControlError::OperationFailed {
            id: id.to_string(),
            op: "build",
            reason,
        };
        let resp = self
            .control
            .sandboxes_agents()
            .send(req)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let status = resp.status();
        let mut stream = resp.into_body().into_data_stream();
        if !status.is_success() {
            let mut text = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                text.extend_from_slice(&chunk);
            }
            let message = serde_json::from_slice::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
            return Err(ControlError::BuildFailed(format!(
                "step {} ({}) could not start: {message}",
                self.step, step.text
            )));
        }
        let mut events = EventBuffer::default();
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut exit: Option<serde_json::Value> = None;
        'read: while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(e.to_string()))?;
            events.push(&chunk);
            while let Some(event) = events.next_event() {
                let (name, data) = parse_event(event);
                match name.as_str() {
                    "output" => {
                        let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                        let line = v
                            .get("line")
                            .and_then(|l| l.as_str())
                            .unwrap_or_default()
                            .to_string();
                        let stream = v
                            .get("stream")
                            .and_then(|s| s.as_str())
                            .unwrap_or("stdout")
                            .to_string();
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.clone());
                        self.emit(ImageProgressEvent::Output { stream, line }).await;
                    }
                    "exit" => {
                        exit = serde_json::from_str(&data).ok();
                        break 'read;
                    }
                    _ => {}
                }
            }
        }
        let code = exit
            .as_ref()
            .and_then(|e| e.get("exit_code"))
            .and_then(|c| c.as_i64());
        if code != Some(0) {
            let how = match (
                code,
                exit.as_ref()
                    .and_then(|e| e.get("signal"))
                    .and_then(|s| s.as_i64()),
            ) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "no exit status (the builder sandbox stopped)".into(),
            };
            let output: Vec<String> = tail.into_iter().collect();
            return Err(ControlError::BuildFailed(format!(
                "step {} ({}) failed with {how}; its last output:\n{}",
                self.step,
                step.text,
                output.join("\n")
            )));
        }
        // Nothing the step left running writes on while its files are packed.
        let _ = self
            .control
            .sandboxes_agents()
            .send(
                super::Upstream::of(&handle)
                    .agent_request(http::Method::DELETE, "/api/v1/processes")
                    .body(super::AgentBody::empty())
                    .map_err(|e| store_io(std::io::Error::other(e.to_string())))?,
            )
            .await;
        let upper = self
            .control
            .ctx
            .node
            .upper_dir(id)
            .ok_or_else(|| failed("this node keeps no layer to read".into()))?;
        let store = self.control.ctx.images.store().clone();
        let limits = self.control.ctx.images.limits();
        self.blocking(move || {
            store
                .layer_from_dir_excluding(&upper, MOUNTED, &limits)
                .map_err(ControlError::from)
        })
        .await
    }
}

impl Control {
    /// Ends the builder sandboxes a previous run of the server left (a build
    /// does not outlive its server: its client's request died with it).
    pub async fn end_orphan_builders(&self) -> Result<usize, ControlError> {
        let mut ended = 0;
        for record in self.ctx.local_live().await? {
            if record.image.starts_with("build:") {
                tracing::info!(sandbox_id = %record.id, "ending a builder sandbox of a build that died with the server");
                self.sandboxes
                    .delete(None, record.id.as_str(), TerminationReason::ServerRestarted)
                    .await?;
                ended += 1;
            }
        }
        Ok(ended)
    }
}

/// A 400 when a stage's environment and build args outgrow
/// [`dockerfile::MAX_ENVIRONMENT_BYTES`], naming the line that made them so.
fn check_environment(
    env: &[String],
    args: &HashMap<String, String>,
    line: usize,
) -> Result<(), ControlError> {
    let bytes = env.iter().map(String::len).sum::<usize>()
        + args
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len())
            .sum::<usize>();
    if bytes > dockerfile::MAX_ENVIRONMENT_BYTES {
        return Err(invalid(format!(
            "line {line}: the stage's environment and build args would hold {} KiB; at most \
             {} KiB",
            bytes.div_ceil(1024),
            dockerfile::MAX_ENVIRONMENT_BYTES >> 10
        )));
    }
    Ok(())
}

fn command_words(cmd: &Command) -> Vec<String> {
    match cmd {
        Command::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.clone()],
        Command::Exec(words) => words.clone(),
    }
}

/// `--chown=uid[:gid]` (numeric: a name would need the image's passwd file).
fn parse_chown(text: &str) -> Result<(u32, u32), ControlError> {
    let (u, g) = text.split_once(':').unwrap_or((text, text));
    match (u.parse::<u32>(), g.parse::<u32>()) {
        (Ok(u), Ok(g)) if u <= 65535 && g <= 65535 => Ok((u, g)),
        _ => Err(invalid(format!(
            "--chown={text}: give numeric ids (uid[:gid], at most 65535)"
        ))),
    }
}

/// The agent's SSE stream, split into events as its chunks arrive.
///
/// Each byte is scanned once: a search resumes where the last one stopped,
/// and the events taken are dropped from the front once per chunk, so a
/// big event arriving in many chunks, or many small events in one chunk,
/// costs linear time (rescanning or shifting the buffer per event was
/// quadratic).
#[derive(Debug, Default)]
struct EventBuffer {
    buf: Vec<u8>,
    /// Start of the first event not yet taken.
    start: usize,
    /// Where the search for the next `\n\n` resumes.
    scanned: usize,
}

impl EventBuffer {
    /// Adds a chunk of the stream.
    fn push(&mut self, chunk: &[u8]) {
        self.buf.drain(..self.start);
        self.scanned = self.scanned.saturating_sub(self.start);
        self.start = 0;
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event (up to and with its blank line), if any.
    fn next_event(&mut self) -> Option<&[u8]> {
        let from = self.scanned.max(self.start);
        let rest = self.buf.get(from..)?;
        match rest.windows(2).position(|w| w == b"\n\n") {
            Some(i) => {
                let (start, end) = (self.start, from + i + 2);
                self.start = end;
                self.scanned = end;
                self.buf.get(start..end)
            }
            None => {
                // The last byte may be the first `\n` of the next chunk's pair.
                self.scanned = self.buf.len().saturating_sub(1).max(from);
                None
            }
        }
    }
}

/// The `event:` name and joined `data:` of one SSE event.
fn parse_event(event: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(event);
    let mut name = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (name, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_bounded_with_its_line() {
        let big = "x".repeat(dockerfile::MAX_ENVIRONMENT_BYTES / 2);
        let env = vec![format!("A={big}")];
        let mut args = HashMap::from([("B".to_string(), "y".repeat(100))]);
        check_environment(&env, &args, 3).expect("half the budget and a bit");
        args.insert("C".into(), big.clone());
        let err = check_environment(&env, &args, 7).expect_err("over");
        let text = err.to_string();
        assert!(
            text.contains("line 7") && text.contains("at most 256 KiB"),
            "{text}"
        );
    }

    /// Every event `chunks` make, in order.
    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut events = EventBuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            events.push(chunk);
            while let Some(event) = events.next_event() {
                out.push(event.to_vec());
            }
        }
        out
    }

    #[test]
    fn sse_events_are_split_and_parsed() {
        let buf = b"event: output\ndata: {\"line\":\"a\"}\n\nevent: exit\ndata: {}\n\n";
        let events = split(&[buf]);
        assert_eq!(events.len(), 2);
        assert_eq!(
            parse_event(&events[0]),
            ("output".into(), "{\"line\":\"a\"}".into())
        );
        assert_eq!(parse_event(&events[1]), ("exit".into(), "{}".into()));
    }

    #[test]
    fn sse_events_split_the_same_whatever_the_chunks() {
        let stream: &[u8] = b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n\nevent: c\n\nrest";
        let whole = split(&[stream]);
        assert_eq!(
            whole,
            vec![
                b"event: a\ndata: 1\n\n".to_vec(),
                b"event: b\ndata: 2\n\n".to_vec(),
                b"\nevent: c\n\n".to_vec(),
            ]
        );
        // Cut anywhere, in two or byte by byte: the same events.
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(split(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(split(&bytes), whole);
    }

    #[test]
    fn a_big_event_in_small_chunks_is_scanned_once() {
        // 8 MiB in 1 KiB chunks: rescanning from the start on every chunk
        // would read 32 GiB.
        let mut events = EventBuffer::default();
        let chunk = [b'x'; 1024];
        for _ in 0..8 * 1024 {
            events.push(&chunk);
            assert!(events.next_event().is_none());
        }
        assert!(events.scanned + 1 >= events.buf.len());
        events.push(b"\n");
        assert!(events.next_event().is_none());
        events.push(b"\nnext");
        assert_eq!(
            events.next_event().map(<[u8]>::len),
            Some(8 * 1024 * 1024 + 2)
        );
        assert!(events.next_event().is_none());
        events.push(b"");
        assert_eq!(events.buf, b"next");
    }

    #[test]
    fn chown_takes_numeric_ids_only() {
        assert_eq!(parse_chown("1000:100").expect("ids"), (1000, 100));
        assert_eq!(parse_chown("7").expect("id"), (7, 7));
        assert!(parse_chown("app").is_err());
        assert!(parse_chown("70000").is_err());
    }

    #[test]
    fn keys_chain() {
        assert_ne!(chain("a", &["RUN x"]), chain("b", &["RUN x"]));
        assert_eq!(chain("a", &["RUN x"]), chain("a", &["RUN x"]));
    }
}
