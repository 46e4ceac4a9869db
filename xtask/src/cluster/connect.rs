//! Reaching the cluster: the kubeconfig files found as kubectl and helm find them, and a
//! client whose API server has answered, or an error that names what is missing and the
//! command that fixes it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::Release;

impl Release {
    /// A client for this release's context (or the current one) whose API server answers,
    /// or an error naming what is missing and the command that fixes it. Every cluster task
    /// starts here, so none meets a missing cluster as a raw client error, and `deploy`
    /// runs it before helm, which without a kubeconfig would quietly try `localhost:8080`.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        self.connect_with(&Kubeconfigs::from_env(), API_TIMEOUT)
            .await
    }

    /// [`Release::connect`] with the kubeconfig files given, so tests need not change the
    /// process's environment.
    pub async fn connect_with(
        &self,
        files: &Kubeconfigs,
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let kubeconfig = files.read()?;
        let Some(context) = self
            .context
            .clone()
            .or_else(|| kubeconfig.current_context.clone())
        else {
            bail!(
                "{files} sets no current context: choose one with `kubectl config use-context <name>` \
                 (`kubectl config get-contexts` lists them), or pass --context"
            );
        };
        if !kubeconfig
            .contexts
            .iter()
            .any(|named| named.name == context)
        {
            bail!(
                "context {context} is not in {files}: pass a --context that `kubectl config get-contexts` \
                 lists, or create the kind cluster with `cargo xtask kind-up`"
            );
        }
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .with_context(|| format!("cannot load context {context} from {files}"))?;
        let server = config.cluster_url.to_string();
        let server = server.trim_end_matches('/');
        let client = Client::try_from(config)
            .with_context(|| format!("cannot build a Kubernetes client for context {context}"))?;
        match tokio::time::timeout(timeout, client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(kube::Error::Api(status))) => bail!(
                "the Kubernetes API server at {server} (context {context}) refused `GET /version` \
                 with {} {}; check the credentials of context {context} (`kubectl cluster-info`)",
                status.code,
                status.message
            ),
            Ok(Err(error)) => bail!(
                "the Kubernetes API server at {server} (context {context}) does not answer: {:#}; \
                 is the cluster running? (`kubectl cluster-info`)",
                anyhow::Error::from(error)
            ),
            Err(_) => bail!(
                "the Kubernetes API server at {server} (context {context}) does not answer: \
                 no answer within {}s; is the cluster running? (`kubectl cluster-info`)",
                timeout.as_secs()
            ),
        }
    }
}

/// How long [`Release::connect`] waits for the API server before calling it unreachable.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The kubeconfig files a client reads, found as kubectl and helm find them, so the
/// cluster kube-rs checks is the one helm then talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kubeconfigs {
    /// The files `KUBECONFIG` lists; missing ones are skipped, as kubectl skips them.
    Listed(Vec<PathBuf>),
    /// `~/.kube/config`, as `KUBECONFIG` is unset (`None`: there is no home directory).
    Default(Option<PathBuf>),
}

impl Kubeconfigs {
    /// The files this process's `KUBECONFIG`, or else its home directory, points at.
    pub fn from_env() -> Self {
        let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
            .map(|value| {
                std::env::split_paths(&value)
                    .filter(|path| !path.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if listed.is_empty() {
            Self::Default(std::env::home_dir().map(|home| home.join(".kube").join("config")))
        } else {
            Self::Listed(listed)
        }
    }

    /// The files that exist, merged (the first to set a value wins), or an error saying how
    /// to get a cluster when there is none.
    pub fn read(&self) -> anyhow::Result<Kubeconfig> {
        let paths = match self {
            Self::Listed(paths) => paths.as_slice(),
            Self::Default(path) => path.as_slice(),
        };
        let existing: Vec<&PathBuf> = paths.iter().filter(|path| path.is_file()).collect();
        let merged = existing
            .iter()
            .try_fold(Kubeconfig::default(), |merged, path| {
                let next = Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
                merged
                    .merge(next)
                    .with_context(|| format!("cannot merge kubeconfig {}", path.display()))
            })?;
        if !merged.contexts.is_empty() {
            return Ok(merged);
        }
        let missing = match self {
            Self::Listed(paths) if existing.is_empty() => format!(
                "KUBECONFIG names {}, {}",
                list(paths),
                if paths.len() == 1 {
                    "which does not exist"
                } else {
                    "none of which exists"
                }
            ),
            Self::Default(Some(path)) if existing.is_empty() => {
                format!("KUBECONFIG is unset and {} does not exist", path.display())
            }
            Self::Default(None) => {
                "KUBECONFIG is unset and there is no home directory for ~/.kube/config".to_owned()
            }
            _ => format!("{self} has no contexts"),
        };
        bail!(
            "no Kubernetes cluster configured: {missing}; create one with `cargo xtask kind-up`, \
             or point KUBECONFIG at your cluster's kubeconfig"
        )
    }
}

/// "kubeconfig <the files>", for messages.
impl fmt::Display for Kubeconfigs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listed(paths) => write!(f, "kubeconfig {} (KUBECONFIG)", list(paths)),
            Self::Default(Some(path)) => write!(f, "kubeconfig {}", path.display()),
            Self::Default(None) => write!(f, "kubeconfig ~/.kube/config"),
        }
    }
}

/// The paths, comma-separated.
fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    shown.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use std::fs;
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::cluster::mock;

    /// A kubeconfig in `dir` whose one context, `test`, is current and points at `server`.
    fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
        let path = dir.join("config");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {server}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             users:\n- name: test\n  user:\n    token: secret\n"
        );
        fs::write(&path, yaml).unwrap();
        path
    }

    /// The error `connect_with` fails with, as `main` prints it.
    async fn connect_error(release: &Release, files: &Kubeconfigs) -> String {
        match release.connect_with(files, Duration::from_secs(10)).await {
            Ok(_) => panic!("connected through {files}"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[tokio::test]
    async fn connect_without_a_kubeconfig_says_to_create_a_cluster_or_set_kubeconfig() {
        let home = tempfile::tempdir().unwrap();
        let missing = home.path().join(".kube/config");

        let error = connect_error(
            &mock::release(),
            &Kubeconfigs::Default(Some(missing.clone())),
        )
        .await;

        assert_eq!(
            error,
            format!(
                "no Kubernetes cluster configured: KUBECONFIG is unset and {} does not exist; \
                 create one with `cargo xtask kind-up`, or point KUBECONFIG at your cluster's kubeconfig",
                missing.display()
            )
        );
    }

    #[tokio::test]
    async fn connect_with_kubeconfig_naming_a_missing_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere.yaml");

        let error = connect_error(
            &mock::release(),
            &Kubeconfigs::Listed(vec![missing.clone()]),
        )
        .await;

        assert!(
            error.starts_with(&format!(
                "no Kubernetes cluster configured: KUBECONFIG names {}, which does not exist; \
                 create one with `cargo xtask kind-up`",
                missing.display()
            )),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connect_to_a_server_that_does_not_answer_names_it_and_how_to_check_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = Kubeconfigs::Listed(vec![kubeconfig(dir.path(), "https://127.0.0.1:1")]);

        let error = connect_error(&mock::release(), &files).await;

        assert!(
            error.starts_with(
                "the Kubernetes API server at https://127.0.0.1:1 (context test) does not answer: "
            ),
            "{error}"
        );
        assert!(
            error.ends_with("; is the cluster running? (`kubectl cluster-info`)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connect_to_an_unknown_context_says_how_to_list_the_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let files = Kubeconfigs::Listed(vec![kubeconfig(dir.path(), "https://127.0.0.1:1")]);
        let release = Release {
            context: Some("kind-cart".to_owned()),
            ..mock::release()
        };

        let error = connect_error(&release, &files).await;

        assert!(
            error.starts_with("context kind-cart is not in kubeconfig "),
            "{error}"
        );
        assert!(
            error.contains("`kubectl config get-contexts`")
                && error.contains("`cargo xtask kind-up`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connect_reads_the_listed_files_that_exist_and_returns_a_client_the_server_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request).await.unwrap();
            let body = r#"{"major":"1","minor":"33","gitVersion":"v1.33.1","gitCommit":"x","gitTreeState":"clean","buildDate":"2025-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let files = Kubeconfigs::Listed(vec![
            dir.path().join("missing.yaml"),
            kubeconfig(dir.path(), &server),
        ]);

        let connected = mock::release()
            .connect_with(&files, Duration::from_secs(10))
            .await;

        if let Err(error) = connected {
            panic!("{error:#}");
        }
    }
}
