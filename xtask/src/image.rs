//! `cargo xtask image`: `docker build` of the Dockerfile, tagged
//! `cart-service:<crate version>-<git sha>` unless `--tag` says otherwise, with the OCI
//! labels' version, revision and creation time passed as build arguments. The creation
//! time is the commit's, so building one commit twice gives the same labels.

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::command::Invocation;
use crate::docker::{require_buildx, require_docker_engine};
use crate::flags;
use crate::plan::{Plan, Step};

/// The workspace version, which the service's crate shares.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The image repository local builds use; the chart's `image.repository` default.
pub const REPOSITORY: &str = "cart-service";

impl flags::Image {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let build = Build::for_head(sh, self.tag)?;
        let plan = Plan::new("cargo xtask image").extend(build.steps());
        if self.dry_run {
            println!("{plan}");
            return Ok(());
        }
        require_docker_engine(sh)?;
        require_buildx(sh)?;
        plan.execute(sh)?;
        println!("built {}", build.tag);
        Ok(())
    }
}

/// One image build: its reference and the labels' commit facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub tag: String,
    pub revision: String,
    pub created: String,
}

impl Build {
    /// The build of the checked-out commit, tagged `tag` or the default.
    pub fn for_head(sh: &Shell, tag: Option<String>) -> anyhow::Result<Self> {
        let revision = cmd!(sh, "git rev-parse --short=12 HEAD")
            .quiet()
            .read()
            .context("cannot read the commit with git (is this a git checkout?)")?;
        let created = cmd!(sh, "git show -s --format=%cI HEAD")
            .quiet()
            .read()
            .context("cannot read the commit time with git")?;
        Ok(Self::new(tag, &revision, &created))
    }

    pub fn new(tag: Option<String>, revision: &str, created: &str) -> Self {
        Self {
            tag: tag.unwrap_or_else(|| format!("{REPOSITORY}:{VERSION}-{revision}")),
            revision: revision.to_owned(),
            created: created.to_owned(),
        }
    }

    /// `repository` and `tag` of the reference.
    // Used by the cluster tasks (the `cluster` feature); tested in every build.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn repository_and_tag(&self) -> (&str, &str) {
        split_reference(&self.tag)
    }

    pub fn steps(&self) -> Vec<Step> {
        vec![Step::Run(
            Invocation::new("docker")
                .args(["build", "--file", "Dockerfile", "--tag", &self.tag])
                .args(["--build-arg", &format!("VERSION={VERSION}")])
                .args(["--build-arg", &format!("REVISION={}", self.revision)])
                .args(["--build-arg", &format!("CREATED={}", self.created)])
                .args(["."])
                .env("DOCKER_BUILDKIT", "1"),
        )]
    }
}

/// `repository:tag` split at the last `:` after the last `/` (a registry's port is not a
/// tag); no tag means `latest`, as docker reads it.
// Used by the cluster tasks (the `cluster` feature); tested in every build.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub fn split_reference(reference: &str) -> (&str, &str) {
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => {
            let at = name_start + colon;
            (&reference[..at], &reference[at + 1..])
        }
        None => (reference, "latest"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test should panic, here as everywhere
mod tests {
    use super::*;

    #[test]
    fn default_tag_is_the_crate_version_and_the_commit() {
        let build = Build::new(None, "0123456789ab", "2026-01-02T03:04:05+00:00");

        assert_eq!(build.tag, format!("cart-service:{VERSION}-0123456789ab"));
        assert_eq!(
            build.repository_and_tag(),
            ("cart-service", &*format!("{VERSION}-0123456789ab"))
        );
    }

    #[test]
    fn repository_and_tag_handle_registries_with_ports_and_missing_tags() {
        let with_port = Build::new(Some("localhost:5000/cart-service:dev".to_owned()), "x", "y");
        let untagged = Build::new(Some("ghcr.io/acme/cart-service".to_owned()), "x", "y");

        assert_eq!(
            with_port.repository_and_tag(),
            ("localhost:5000/cart-service", "dev")
        );
        assert_eq!(
            untagged.repository_and_tag(),
            ("ghcr.io/acme/cart-service", "latest")
        );
    }

    #[test]
    fn the_dockerfile_builds_on_docker_20_10_without_a_registry() {
        let dockerfile =
            std::fs::read_to_string(crate::workspace_root().join("Dockerfile")).unwrap();

        // A `# syntax=` line makes BuildKit pull a frontend image; heredocs and these COPY
        // flags need a newer frontend than Debian's docker.io 20.10 (BuildKit v0.8) has.
        let refused: Vec<&str> = dockerfile
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                line.to_ascii_lowercase().starts_with("# syntax=")
                    || line.contains("<<")
                    || ["--link", "--chmod", "--exclude", "--parents"]
                        .iter()
                        .any(|flag| line.starts_with("COPY") && line.contains(flag))
            })
            .collect();

        assert!(refused.is_empty(), "{refused:?}");
    }

    #[test]
    fn plan_is_one_buildkit_docker_build_with_the_label_arguments() {
        let build = Build::new(
            Some("cart-service:dev".to_owned()),
            "0123456789ab",
            "2026-01-02T03:04:05+00:00",
        );

        let text = Plan::new("cargo xtask image")
            .extend(build.steps())
            .to_string();

        // The crate's version changes on every release; the snapshot names it instead.
        insta::assert_snapshot!(text.replace(VERSION, "[VERSION]"));
    }
}
