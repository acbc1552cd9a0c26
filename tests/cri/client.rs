//! The CRI driver: the gRPC calls a kubelet makes to its container runtime,
//! made to containerd's CRI plugin over its unix socket.
//!
//! The calls block (the tests read like the kubelet's sequence); a small
//! tokio runtime drives tonic underneath. Every call has a deadline, so a
//! hung containerd or shim fails the scenario instead of hanging the test.
//! Errors are strings naming the call and the object, ready for a report.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
pub use k8s_cri::v1::*;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// The longest any single call may take. Creating a VM-mode container
/// boots a guest under TCG, which takes seconds on a loaded machine.
const CALL_DEADLINE: Duration = Duration::from_secs(180);

pub type R<T> = Result<T, String>;

/// A connection to one CRI endpoint (runtime and image services).
pub struct Cri {
    rt: tokio::runtime::Runtime,
    rs: RuntimeServiceClient<Channel>,
    is: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connect to the CRI socket at `sock` (waiting up to `wait` for it to
    /// answer `Version`, as containerd loads its plugins after it listens).
    pub fn connect(sock: &Path, wait: Duration) -> R<Cri> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path = sock.to_path_buf();
        // The lazy channel spawns its connection task on the runtime.
        let _in_runtime = rt.enter();
        let channel = Endpoint::from_static("http://cri.invalid").connect_with_connector_lazy(
            tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(p).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }),
        );
        drop(_in_runtime);
        let cri = Cri {
            rt,
            rs: RuntimeServiceClient::new(channel.clone()),
            is: ImageServiceClient::new(channel),
        };
        let deadline = Instant::now() + wait;
        loop {
            match cri.version() {
                Ok(v) if !v.runtime_version.is_empty() => return Ok(cri),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    // Wait on the socket's answer, polling with a short gap.
                    cri.pause(Duration::from_millis(100));
                }
                Ok(v) => return Err(format!("CRI Version answered without a version: {v:?}")),
                Err(e) => {
                    return Err(format!(
                        "the CRI socket {} did not answer within {wait:?}: {e}",
                        sock.display()
                    ))
                }
            }
        }
    }

    fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> R<T> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(CALL_DEADLINE, fut).await })
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(format!("{what}: {:?}: {}", s.code(), s.message())),
            Err(_) => Err(format!("{what}: no answer within {CALL_DEADLINE:?}")),
        }
    }

    /// Sleep on the client's runtime (used between polls of a state).
    pub fn pause(&self, d: Duration) {
        self.rt.block_on(async { tokio::time::sleep(d).await });
    }

    pub fn version(&self) -> R<VersionResponse> {
        let req = VersionRequest {
            version: "v1".into(),
        };
        self.call("Version", self.rs.clone().version(req))
    }

    pub fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> R<String> {
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let name = meta_name(config);
        self.call(
            &format!("RunPodSandbox {name} (handler {handler})"),
            self.rs.clone().run_pod_sandbox(req),
        )
        .map(|r| r.pod_sandbox_id)
    }

    /// The pod's status and the verbose `info` JSON (containerd puts the
    /// sandbox's pid, netns path and config there).
    pub fn pod_status(&self, id: &str) -> R<(PodSandboxStatus, serde_json::Value)> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let r = self.call(
            &format!("PodSandboxStatus {id}"),
            self.rs.clone().pod_sandbox_status(req),
        )?;
        let info = r
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        let st = r
            .status
            .ok_or_else(|| format!("PodSandboxStatus {id}: no status"))?;
        Ok((st, info))
    }

    pub fn stop_pod(&self, id: &str) -> R<()> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call(
            &format!("StopPodSandbox {id}"),
            self.rs.clone().stop_pod_sandbox(req),
        )
        .map(drop)
    }

    pub fn remove_pod(&self, id: &str) -> R<()> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call(
            &format!("RemovePodSandbox {id}"),
            self.rs.clone().remove_pod_sandbox(req),
        )
        .map(drop)
    }

    pub fn list_pods(&self) -> R<Vec<PodSandbox>> {
        self.call(
            "ListPodSandbox",
            self.rs
                .clone()
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.items)
    }

    pub fn list_containers(&self, pod: Option<&str>) -> R<Vec<Container>> {
        let filter = pod.map(|p| ContainerFilter {
            pod_sandbox_id: p.to_string(),
            ..Default::default()
        });
        self.call(
            "ListContainers",
            self.rs
                .clone()
                .list_containers(ListContainersRequest { filter }),
        )
        .map(|r| r.containers)
    }

    pub fn pull_image(&self, image: &str) -> R<String> {
        let req = PullImageRequest {
            image: Some(image_spec(image)),
            ..Default::default()
        };
        self.call(
            &format!("PullImage {image}"),
            self.is.clone().pull_image(req),
        )
        .map(|r| r.image_ref)
    }

    pub fn image_status(&self, image: &str) -> R<Option<Image>> {
        let req = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        self.call(
            &format!("ImageStatus {image}"),
            self.is.clone().image_status(req),
        )
        .map(|r| r.image)
    }

    pub fn create_container(
        &self,
        pod: &str,
        config: &ContainerConfig,
        pod_config: &PodSandboxConfig,
    ) -> R<String> {
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
        self.call(
            &format!("CreateContainer {name} in {pod}"),
            self.rs.clone().create_container(req),
        )
        .map(|r| r.container_id)
    }

    pub fn start_container(&self, id: &str) -> R<()> {
        let req = StartContainerRequest {
            container_id: id.to_string(),
        };
        self.call(
            &format!("StartContainer {id}"),
            self.rs.clone().start_container(req),
        )
        .map(drop)
    }

    pub fn container_status(&self, id: &str) -> R<ContainerStatus> {
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.call(
            &format!("ContainerStatus {id}"),
            self.rs.clone().container_status(req),
        )?
        .status
        .ok_or_else(|| format!("ContainerStatus {id}: no status"))
    }

    /// ExecSync: `cmd` in the container, killed after `timeout_s` seconds
    /// (0 = no timeout), as the kubelet runs exec probes.
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout_s: i64) -> R<ExecSyncResponse> {
        let req = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        };
        self.call(
            &format!("ExecSync {cmd:?} in {id}"),
            self.rs.clone().exec_sync(req),
        )
    }

    pub fn container_stats(&self, id: &str) -> R<ContainerStats> {
        let req = ContainerStatsRequest {
            container_id: id.to_string(),
        };
        self.call(
            &format!("ContainerStats {id}"),
            self.rs.clone().container_stats(req),
        )?
        .stats
        .ok_or_else(|| format!("ContainerStats {id}: no stats"))
    }

    pub fn list_container_stats(&self, pod: &str) -> R<Vec<ContainerStats>> {
        let req = ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod.to_string(),
                ..Default::default()
            }),
        };
        self.call(
            &format!("ListContainerStats of {pod}"),
            self.rs.clone().list_container_stats(req),
        )
        .map(|r| r.stats)
    }

    pub fn update_resources(&self, id: &str, res: &LinuxContainerResources) -> R<()> {
        let req = UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(res.clone()),
            ..Default::default()
        };
        self.call(
            &format!("UpdateContainerResources {id}"),
            self.rs.clone().update_container_resources(req),
        )
        .map(drop)
    }

    pub fn reopen_log(&self, id: &str) -> R<()> {
        let req = ReopenContainerLogRequest {
            container_id: id.to_string(),
        };
        self.call(
            &format!("ReopenContainerLog {id}"),
            self.rs.clone().reopen_container_log(req),
        )
        .map(drop)
    }

    /// StopContainer: the stop signal, then SIGKILL after `grace_s` seconds.
    pub fn stop_container(&self, id: &str, grace_s: i64) -> R<()> {
        let req = StopContainerRequest {
            container_id: id.to_string(),
            timeout: grace_s,
        };
        self.call(
            &format!("StopContainer {id} (grace {grace_s} s)"),
            self.rs.clone().stop_container(req),
        )
        .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> R<()> {
        let req = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.call(
            &format!("RemoveContainer {id}"),
            self.rs.clone().remove_container(req),
        )
        .map(drop)
    }

    /// Poll ContainerStatus until `want`, up to `within`; returns the status.
    pub fn wait_state(
        &self,
        id: &str,
        want: ContainerState,
        within: Duration,
    ) -> R<ContainerStatus> {
        let deadline = Instant::now() + within;
        loop {
            let st = self.container_status(id)?;
            if st.state == want as i32 {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "container {id} ({}) is {:?}, not {want:?}, after {within:?} (reason {:?}, message {:?})",
                    st.metadata.as_ref().map_or("", |m| m.name.as_str()),
                    ContainerState::try_from(st.state).unwrap_or(ContainerState::ContainerUnknown),
                    st.reason,
                    st.message
                ));
            }
            self.pause(Duration::from_millis(50));
        }
    }
}

/// An image reference as the CRI takes it.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

fn meta_name(config: &PodSandboxConfig) -> &str {
    config.metadata.as_ref().map_or("", |m| m.name.as_str())
}
