//! `alcove volume ls|create|get|rm|attach|detach`: persistent volumes (docs/volumes.md).

use alcove_client::wire::file_system::FileSystemMount;

use super::connection::ServerArgs;
use super::output;
use super::sandbox::parse_mib;

/// `alcove volume …`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove volume create data --size 5G
  alcove volume attach dev data /data
  alcove volume ls
  alcove volume detach dev /data
  alcove volume detach dev data      # by name, when data is mounted at one path in dev
  alcove volume rm data")]
pub struct VolumeArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List volumes and where they are mounted.
    #[command(visible_alias = "list")]
    Ls {
        /// Print the volumes as a JSON array (of FileSystemInfo).
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a volume.
    Create {
        /// Name.
        name: String,
        /// Size, e.g. 512M or 5G.
        #[arg(long, value_parser = parse_mib)]
        size: i64,
    },
    /// Show one volume as JSON.
    #[command(visible_alias = "inspect")]
    Get {
        /// Name.
        name: String,
    },
    /// Delete a volume and its data (refused while mounted).
    #[command(visible_alias = "delete")]
    Rm {
        /// Name.
        name: String,
    },
    /// Mount a volume into a running sandbox, live.
    Attach {
        /// Sandbox id or name.
        sandbox: String,
        /// Volume name.
        name: String,
        /// Absolute mount path in the sandbox.
        path: String,
        /// Mount it read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Unmount a volume from a running sandbox.
    Detach {
        /// Sandbox id or name.
        sandbox: String,
        /// The mount path, or the volume's name when it is mounted at one path there.
        #[arg(value_name = "PATH|NAME")]
        path: String,
    },
}

/// Runs `alcove volume …`.
pub async fn run(args: VolumeArgs) -> anyhow::Result<()> {
    let c = args.server.connect()?;
    let explain = |e| c.explain(e);
    match args.action {
        Action::Ls { json, quiet } => {
            let volumes = c.client.list_file_systems().await.map_err(explain)?;
            if json {
                return output::json(&volumes);
            }
            if quiet {
                return output::ids(volumes.iter().map(|v| &v.name));
            }
            output::table(
                ["NAME", "SIZE", "USED", "MOUNTED IN", "CREATED"],
                volumes.iter().map(|v| {
                    let mounts: Vec<String> = v
                        .attachments
                        .iter()
                        .map(|a| format!("{}:{}", a.sandbox_id, a.mount_path))
                        .collect();
                    [
                        v.name.clone(),
                        format!("{} MiB", v.size_mb),
                        v.used_mb.map(|u| format!("{u} MiB")).unwrap_or_default(),
                        mounts.join(", "),
                        output::ago(v.created_at),
                    ]
                }),
            );
            Ok(())
        }
        Action::Create { name, size } => {
            let v = c
                .client
                .create_file_system(&name, size)
                .await
                .map_err(explain)?;
            println!("{} {} MiB", v.name, v.size_mb);
            Ok(())
        }
        Action::Get { name } => {
            let v = c.client.get_file_system(&name).await.map_err(explain)?;
            output::json(&v)
        }
        Action::Rm { name } => {
            c.client.delete_file_system(&name).await.map_err(explain)?;
            println!("{name}");
            Ok(())
        }
        Action::Attach {
            sandbox,
            name,
            path,
            read_only,
        } => {
            let mount = FileSystemMount {
                file_system_id: name.clone(),
                mount_path: path.clone(),
                read_only,
                prefetch: None,
                snapshot_id: None,
                owner: None,
            };
            c.client
                .attach_file_system(&sandbox, &mount)
                .await
                .map_err(explain)?;
            println!("{name} mounted at {sandbox}:{path}");
            Ok(())
        }
        Action::Detach { sandbox, path } => {
            let path = if path.starts_with('/') {
                path
            } else {
                mount_path_of(&c, &sandbox, &path).await?
            };
            c.client
                .detach_file_system(&sandbox, &path)
                .await
                .map_err(explain)?;
            println!("unmounted {sandbox}:{path}");
            Ok(())
        }
    }
}

/// Where volume `name` is mounted in `sandbox`: its one mount path, or an error naming what is
/// mounted there (none, or several paths to choose from).
async fn mount_path_of(
    c: &super::connection::Connection,
    sandbox: &str,
    name: &str,
) -> anyhow::Result<String> {
    let info = c.client.get(sandbox).await.map_err(|e| c.explain(e))?;
    let paths: Vec<&str> = info
        .file_systems
        .iter()
        .filter(|m| m.file_system_id == name)
        .map(|m| m.mount_path.as_str())
        .collect();
    match paths[..] {
        [path] => Ok(path.to_string()),
        [] => {
            let mounted: Vec<String> = info
                .file_systems
                .iter()
                .map(|m| format!("{} at {}", m.file_system_id, m.mount_path))
                .collect();
            let mounted = if mounted.is_empty() {
                "no volume".to_string()
            } else {
                mounted.join(", ")
            };
            anyhow::bail!(
                "volume {name} is not mounted in {sandbox} (mounted there: {mounted}); a mount \
                 path starts with /"
            )
        }
        _ => anyhow::bail!(
            "volume {name} is mounted at several paths in {sandbox} ({}): name the one to unmount",
            paths.join(", ")
        ),
    }
}
