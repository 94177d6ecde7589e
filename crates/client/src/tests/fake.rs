//! A tiny fake Alcove server for unit tests: an axum router on a loopback port, and the
//! bodies it answers with.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alcove_wire::sandbox::{NetworkConfig, ResourcesInfo, SandboxInfo, SandboxStatus};
use axum::Router;

use crate::{SandboxClient, SandboxClientBuilder};

/// Serves `router` on 127.0.0.1; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds a loopback port");
    let addr = listener.local_addr().expect("has an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A client of `url` that ignores the environment, with short deadlines.
pub fn client(url: &str) -> SandboxClient {
    builder(url).build().expect("builds")
}

/// The builder behind [`client`], to adjust.
pub fn builder(url: &str) -> SandboxClientBuilder {
    SandboxClient::builder()
        .read_env(false)
        .api_url(url)
        .api_key("test-key")
        .timeout(Duration::from_secs(5))
}

/// A sandbox description whose `sandbox_url` is `url` (the fake itself).
pub fn info(id: &str, status: SandboxStatus, url: &str) -> SandboxInfo {
    SandboxInfo {
        id: id.into(),
        namespace: "default".into(),
        status,
        name: None,
        image: "alcove/debian".into(),
        resources: ResourcesInfo {
            cpus: 1.0,
            memory_mb: 1024,
            disk_mb: 10240,
            ephemeral_disk_mb: 10240,
        },
        sandbox_url: Some(url.into()),
        secret_names: vec![],
        timeout_secs: 0,
        entrypoint: vec![],
        network_policy: NetworkConfig {
            allow_internet_access: true,
            allow_out: vec![],
            deny_out: vec![],
        },
        allow_unauthenticated_access: false,
        exposed_ports: vec![],
        auto_resume: true,
        created_at: 0,
        terminated_at: None,
        pending_reason: None,
        termination_reason: None,
        error_details: None,
        ingress_endpoint: None,
        runtime: "runc".into(),
        file_systems: vec![],
        resource_resize: None,
        pool_id: None,
        node_selector: Default::default(),
    }
}

/// Counts the hits of a route.
#[derive(Clone, Default)]
pub struct Hits(Arc<AtomicUsize>);

impl Hits {
    /// Counts one hit; returns how many there were before it.
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst)
    }

    /// Hits so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A fake whose sandbox `sb` points back at the fake, plus `routes` for its agent.
pub async fn sandbox_with(
    routes: Router,
    adjust: impl FnOnce(SandboxClientBuilder) -> SandboxClientBuilder,
) -> crate::Sandbox {
    // The sandbox's URL is the fake's own, known only once it listens.
    let shared = Arc::new(tokio::sync::OnceCell::new());
    let own_url = shared.clone();
    let router = routes.route(
        "/v1/namespaces/default/sandboxes/sb",
        axum::routing::get(move || {
            let own_url = own_url.clone();
            async move {
                let url: &String = own_url.get().expect("url known before use");
                axum::Json(info("sb", SandboxStatus::Running, url))
            }
        }),
    );
    let url = serve(router).await;
    let _ = shared.set(url.clone());
    let client = adjust(builder(&url)).build().expect("builds");
    client.connect("sb").await.expect("connects")
}
