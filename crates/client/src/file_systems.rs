//! Persistent volumes (docs/volumes.md): create, list, get and delete them, and mount them into
//! running sandboxes live (attach, detach). Mounting at create is `CreateOptions`'
//! `file_systems`.

use alcove_wire::file_system::{
    CreateFileSystemRequest, DetachFileSystemRequest, FileSystemInfo, FileSystemMount,
    ListFileSystemsResponse,
};
use alcove_wire::sandbox::SandboxInfo;
use http::Method;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

impl SandboxClient {
    /// Creates a volume of `size_mb` MiB.
    pub async fn create_file_system(
        &self,
        name: &str,
        size_mb: i64,
    ) -> Result<FileSystemInfo, ClientError> {
        let name = identifier_arg(name, "name")?;
        let call = self
            .call(Method::POST, &["file-systems"], Scope::Plain)?
            .policy(false, false)
            .json(&CreateFileSystemRequest {
                name: name.to_string(),
                size_mb,
            })?;
        self.transport.json(call, "file system").await
    }

    /// The namespace's volumes, by name, with where each is mounted.
    pub async fn list_file_systems(&self) -> Result<Vec<FileSystemInfo>, ClientError> {
        let call = self.call(Method::GET, &["file-systems"], Scope::Plain)?;
        let list: ListFileSystemsResponse = self.transport.json(call, "file system list").await?;
        Ok(list.file_systems)
    }

    /// One volume.
    pub async fn get_file_system(&self, name: &str) -> Result<FileSystemInfo, ClientError> {
        let name = identifier_arg(name, "name")?;
        let call = self.call(Method::GET, &["file-systems", name], Scope::Plain)?;
        self.transport.json(call, "file system").await
    }

    /// Deletes a volume and its data (409 while a live sandbox has it mounted).
    pub async fn delete_file_system(&self, name: &str) -> Result<(), ClientError> {
        let name = identifier_arg(name, "name")?;
        let call = self.call(Method::DELETE, &["file-systems", name], Scope::Plain)?;
        self.transport.body(call).await.map(drop)
    }

    /// Mounts a volume into a running sandbox, live; answers the sandbox with it listed.
    pub async fn attach_file_system(
        &self,
        identifier: &str,
        mount: &FileSystemMount,
    ) -> Result<SandboxInfo, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        // Not scoped to the sandbox: a 404 may name the volume.
        let call = self
            .call(
                Method::POST,
                &["sandboxes", id, "file_systems"],
                Scope::Plain,
            )?
            .policy(false, false)
            .json(mount)?;
        self.transport.json(call, "sandbox").await
    }

    /// Unmounts the volume at `mount_path` from a running sandbox (409 while files on it are
    /// in use); answers the sandbox without it.
    pub async fn detach_file_system(
        &self,
        identifier: &str,
        mount_path: &str,
    ) -> Result<SandboxInfo, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let call = self
            .call(
                Method::DELETE,
                &["sandboxes", id, "file_systems"],
                Scope::Plain,
            )?
            .policy(false, false)
            .json(&DetachFileSystemRequest {
                mount_path: mount_path.to_string(),
            })?;
        self.transport.json(call, "sandbox").await
    }
}
