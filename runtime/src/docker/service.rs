//! [`DockerService`] for [`DockerPack`]: each operation as bollard requests.

use std::collections::HashMap;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use futures_util::{StreamExt, stream};

use super::api::types::{
    ContainerCreateInput, ContainerCreated, ContainerDetails, ContainerExecInput, ContainerList,
    ContainerListInput, ContainerLogsInput, ContainerRef, ContainerRemoveInput, ContainerRemoved,
    ContainerState, ContainerStopInput, ContainerSummary, ExecExit, ExecItem, ExecOutput,
    ImageDetails, ImageList, ImageListInput, ImageRef, ImageSummary, Labels, LogLine, OutputStream,
    PullProgress,
};
use super::api::{
    ContainerCreateError, ContainerExecError, ContainerInspectError, ContainerListError,
    ContainerLogsError, ContainerRemoveError, ContainerRestartError, ContainerStartError,
    ContainerStopError, DockerService, ImageInspectError, ImageListError, ImagePullError,
};
use super::errors::{Subject, daemon_error, docker_error, op_error, pull_failed};
use super::{ADMIN_SCOPE, DockerPack, LABEL_MANAGED, LABEL_OWNER, RESERVED_LABEL_PREFIX};
use crate::context::Context;
use crate::error::CallError;
use crate::typed::{ItemStream, OpError};

type Result<T, E> = std::result::Result<T, OpError<E>>;

impl DockerService for DockerPack {
    async fn container_list(
        &self,
        ctx: Context,
        input: ContainerListInput,
    ) -> Result<ContainerList, ContainerListError> {
        let Some(identity) = ctx.identity() else {
            return Ok(ContainerList { containers: vec![] });
        };
        // What the caller may see (see `ownership`): its own containers; with a static
        // grant, every container alknet created; with the admin scope, every container.
        let own = vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_OWNER}={}", identity.id),
        ];
        let labels = if input.owned_only {
            own
        } else if identity.has_scope(ADMIN_SCOPE) {
            Vec::new()
        } else if super::ownership::sees_every_container(identity) {
            vec![format!("{LABEL_MANAGED}=true")]
        } else {
            own
        };
        let mut filters = HashMap::new();
        if !labels.is_empty() {
            filters.insert("label".to_owned(), labels);
        }
        let options = ListContainersOptions {
            all: input.all,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| op_error(e, Subject::Daemon))?;
        let containers = containers
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                ContainerSummary {
                    id: c.id.unwrap_or_default(),
                    names: c
                        .names
                        .unwrap_or_default()
                        .into_iter()
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .collect(),
                    image: c.image.unwrap_or_default(),
                    state: c.state.map(|s| enum_text(&s)).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                    owner: owner(&labels),
                    labels: Labels(labels),
                }
            })
            .collect();
        Ok(ContainerList { containers })
    }

    async fn container_inspect(
        &self,
        _ctx: Context,
        input: ContainerRef,
    ) -> Result<ContainerDetails, ContainerInspectError> {
        let container = self.inspect(&input.id).await?;
        let config = container.config.clone().unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        Ok(ContainerDetails {
            id: container.id.clone().unwrap_or_default(),
            name: container
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image: config.image.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            created: container.created.as_ref().map(|c| c.to_string()),
            state: state_of(&container),
            owner: owner(&labels),
            labels: Labels(labels),
            tty: config.tty.unwrap_or(false),
        })
    }

    async fn container_create(
        &self,
        ctx: Context,
        input: ContainerCreateInput,
    ) -> Result<ContainerCreated, ContainerCreateError> {
        let mut labels = input.labels.map(|l| l.0).unwrap_or_default();
        if let Some(reserved) = labels
            .keys()
            .find(|key| key.starts_with(RESERVED_LABEL_PREFIX))
        {
            return Err(OpError::Call(CallError::invalid_input(
                format!(
                    "labels starting with `{RESERVED_LABEL_PREFIX}` are set by alknet, not by callers: `{reserved}`"
                ),
                format!("/labels/{}", alknet_spec::keywords::escape(reserved)),
            )));
        }
        let Some(identity) = ctx.identity() else {
            return Err(OpError::Call(CallError::forbidden(
                "authentication required: containers are owned by their creator",
            )));
        };
        labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
        labels.insert(LABEL_OWNER.to_owned(), identity.id.clone());
        let env = super::input_env(input.env.as_ref());
        let body = ContainerCreateBody {
            image: Some(input.image.to_string()),
            cmd: non_empty(input.cmd),
            entrypoint: non_empty(input.entrypoint),
            env: non_empty(env),
            working_dir: input.working_dir,
            labels: Some(labels),
            tty: Some(input.tty),
            open_stdin: Some(input.open_stdin),
            attach_stdin: Some(input.open_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: input.name.map(|n| n.to_string()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| op_error(e, Subject::Image(&input.image)))?;
        Ok(ContainerCreated {
            id: created.id,
            warnings: created.warnings,
        })
    }

    async fn container_start(
        &self,
        _ctx: Context,
        input: ContainerRef,
    ) -> Result<ContainerState, ContainerStartError> {
        let done = self.docker.start_container(&input.id, None).await;
        self.state_after(&input.id, done).await
    }

    async fn container_stop(
        &self,
        _ctx: Context,
        input: ContainerStopInput,
    ) -> Result<ContainerState, ContainerStopError> {
        let options = StopContainerOptions {
            t: Some(timeout_secs(input.timeout_secs)),
            signal: None,
        };
        let done = self.docker.stop_container(&input.id, Some(options)).await;
        self.state_after(&input.id, done).await
    }

    async fn container_restart(
        &self,
        _ctx: Context,
        input: ContainerStopInput,
    ) -> Result<ContainerState, ContainerRestartError> {
        let options = RestartContainerOptions {
            t: Some(timeout_secs(input.timeout_secs)),
            signal: None,
        };
        let done = self
            .docker
            .restart_container(&input.id, Some(options))
            .await;
        self.state_after(&input.id, done).await
    }

    async fn container_remove(
        &self,
        _ctx: Context,
        input: ContainerRemoveInput,
    ) -> Result<ContainerRemoved, ContainerRemoveError> {
        // The full id, as every other operation answers, whatever reference the caller gave.
        let id = self.inspect(&input.id).await?.id.unwrap_or_default();
        let options = RemoveContainerOptions {
            force: input.force,
            ..Default::default()
        };
        self.docker
            .remove_container(&id, Some(options))
            .await
            .map_err(|e| op_error(e, Subject::Container(&input.id)))?;
        Ok(ContainerRemoved { id, removed: true })
    }

    async fn container_logs(
        &self,
        _ctx: Context,
        input: ContainerLogsInput,
    ) -> Result<ItemStream<LogLine, ContainerLogsError>, ContainerLogsError> {
        // Asked first, so a missing container is CONTAINER_NOT_FOUND before anything streams.
        let id = self.inspect(&input.id).await?.id.unwrap_or_default();
        let options = LogsOptions {
            follow: input.follow,
            stdout: input.stdout,
            stderr: input.stderr,
            timestamps: true,
            tail: input
                .tail
                .map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..Default::default()
        };
        // Dropping the stream (an abort, a disconnect) drops the daemon request with it.
        let lines = self.docker.logs(&id, Some(options)).map(move |item| {
            let output = item.map_err(|e| op_error(e, Subject::Container(&id)))?;
            let (stream, bytes) = split_output(output);
            let text = String::from_utf8_lossy(&bytes);
            // With `timestamps`, each chunk starts with an RFC 3339 time and a space.
            let (timestamp, text) = match text.split_once(' ') {
                Some((time, rest)) if looks_like_timestamp(time) => {
                    (Some(time.to_owned()), rest.to_owned())
                }
                _ => (None, text.into_owned()),
            };
            Ok(LogLine {
                stream,
                timestamp,
                text,
            })
        });
        Ok(self.counted(lines).boxed())
    }

    async fn container_exec(
        &self,
        _ctx: Context,
        input: ContainerExecInput,
    ) -> Result<ItemStream<ExecItem, ContainerExecError>, ContainerExecError> {
        if input.tty {
            return Err(OpError::Call(CallError::invalid_input(
                "a command with a TTY needs an interactive session: ALPN `alknet/tty` \
                 (`alknet tty ADDR CONTAINER -- CMD…`); `container/exec` streams without one",
                "/tty",
            )));
        }
        let id = self.inspect(&input.id).await?.id.unwrap_or_default();
        let env = super::input_env(input.env.as_ref());
        let exec = self
            .docker
            .create_exec(
                &id,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(input.cmd),
                    env: non_empty(env),
                    working_dir: input.working_dir,
                    user: input.user,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| op_error(e, Subject::Container(&id)))?
            .id;
        let started = self
            .docker
            .start_exec(&exec, None)
            .await
            .map_err(|e| op_error(e, Subject::Container(&id)))?;
        let StartExecResults::Attached { output, input: _ } = started else {
            return Err(OpError::Call(docker_error("the exec started detached")));
        };
        let kill =
            super::process::KillOnDrop::new(self, super::process::Target::Exec(exec.clone()));
        let output = output.map(|item| {
            let (stream, bytes) = split_output(item.map_err(|e| op_error(e, Subject::Daemon))?);
            Ok(ExecItem::Output(ExecOutput {
                stream,
                text: String::from_utf8_lossy(&bytes).into_owned(),
            }))
        });
        // After the output: the exit code, then the end. The guard rides along, so an abort
        // before the end kills the command.
        let docker = self.docker.clone();
        let exit = stream::once(async move {
            let mut kill = kill;
            let code = super::process::Target::Exec(exec).exit_code(&docker).await;
            kill.disarm();
            code.map_err(OpError::Call).map(|exit_code| {
                ExecItem::Exit(ExecExit {
                    exit_code,
                    terminal: true,
                })
            })
        });
        Ok(self.counted(output.chain(exit)).boxed())
    }

    async fn image_list(
        &self,
        _ctx: Context,
        _input: ImageListInput,
    ) -> Result<ImageList, ImageListError> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(|e| op_error(e, Subject::Daemon))?;
        let images = images
            .into_iter()
            .map(|i| ImageSummary {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size: u64::try_from(i.size).unwrap_or(0),
                created: rfc3339_from_unix(i.created),
            })
            .collect();
        Ok(ImageList { images })
    }

    async fn image_inspect(
        &self,
        _ctx: Context,
        input: ImageRef,
    ) -> Result<ImageDetails, ImageInspectError> {
        let image = self
            .docker
            .inspect_image(&input.image)
            .await
            .map_err(|e| op_error(e, Subject::Image(&input.image)))?;
        Ok(ImageDetails {
            id: image.id.unwrap_or_default(),
            tags: image.repo_tags.unwrap_or_default(),
            size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            created: image.created.map(|c| c.to_string()),
            architecture: image.architecture.unwrap_or_default(),
            os: image.os.unwrap_or_default(),
        })
    }

    async fn image_pull(
        &self,
        _ctx: Context,
        input: ImageRef,
    ) -> Result<ItemStream<PullProgress, ImagePullError>, ImagePullError> {
        let image = input.image.to_string();
        let (from_image, tag) = split_reference(&image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let progress = self
            .docker
            .create_image(Some(options), None, None)
            .map(move |item| {
                let info =
                    item.map_err(|e| OpError::Call(daemon_error(e, Subject::Pull(&image))))?;
                if let Some(error) = info.error_detail.and_then(|d| d.message) {
                    return Err(OpError::Call(pull_failed(&image, &error)));
                }
                let detail = info.progress_detail.unwrap_or_default();
                Ok(PullProgress {
                    status: info.status.unwrap_or_default(),
                    layer: info.id,
                    current: detail.current.and_then(|n| u64::try_from(n).ok()),
                    total: detail.total.and_then(|n| u64::try_from(n).ok()),
                })
            });
        // A failed item ends the subscription: nothing after an error is sent.
        Ok(end_after_error(self.counted(progress)))
    }
}

impl DockerPack {
    /// The container's state once `done` (a request about `id`) succeeded.
    async fn state_after<E>(
        &self,
        id: &str,
        done: std::result::Result<(), bollard::errors::Error>,
    ) -> Result<ContainerState, E> {
        done.map_err(|e| op_error(e, Subject::Container(id)))?;
        Ok(state_of(&self.inspect(id).await?))
    }

    async fn inspect<E>(&self, id: &str) -> Result<ContainerInspectResponse, E> {
        self.docker
            .inspect_container(id, None)
            .await
            .map_err(|e| op_error(e, Subject::Container(id)))
    }
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-01T08:00:00Z`): the daemon lists images with
/// seconds but describes them with RFC 3339, and the pack answers one way.
fn rfc3339_from_unix(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    // The civil date of a day count since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3_600,
        time % 3_600 / 60,
        time % 60
    )
}

/// Stops a stream after its first error.
fn end_after_error<T: Send + 'static, E: Send + 'static>(
    items: impl futures_util::Stream<Item = Result<T, E>> + Send + 'static,
) -> ItemStream<T, E> {
    items
        .scan(false, |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            *failed = item.is_err();
            std::future::ready(Some(item))
        })
        .boxed()
}

/// `name[:tag]` or `name@digest` as the daemon's `fromImage` and `tag` (default `latest`).
fn split_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    // A colon after the last slash is a tag; one before it is a registry port.
    let last_segment = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_segment..].rfind(':') {
        Some(colon) => {
            let at = last_segment + colon;
            (image[..at].to_owned(), Some(image[at + 1..].to_owned()))
        }
        None => (image.to_owned(), Some("latest".to_owned())),
    }
}

fn split_output(output: LogOutput) -> (OutputStream, bytes::Bytes) {
    match output {
        LogOutput::StdOut { message } | LogOutput::StdIn { message } => {
            (OutputStream::Stdout, message)
        }
        LogOutput::StdErr { message } => (OutputStream::Stderr, message),
        LogOutput::Console { message } => (OutputStream::Console, message),
    }
}

fn looks_like_timestamp(text: &str) -> bool {
    text.len() >= 20 && text.as_bytes()[4] == b'-' && text.contains('T')
}

fn state_of(container: &ContainerInspectResponse) -> ContainerState {
    let state = container.state.clone().unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let status = state.status.map(|s| enum_text(&s)).unwrap_or_default();
    ContainerState {
        id: container.id.clone().unwrap_or_default(),
        exit_code: state.exit_code.filter(|_| !running && status != "created"),
        running,
        status,
    }
}

fn owner(labels: &HashMap<String, String>) -> Option<String> {
    (labels.get(LABEL_MANAGED).map(String::as_str) == Some("true"))
        .then(|| labels.get(LABEL_OWNER).cloned())
        .flatten()
}

/// A bollard enum as the daemon's word for it.
fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

fn timeout_secs(secs: i64) -> i32 {
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::{rfc3339_from_unix, split_reference};

    #[test]
    fn unix_seconds_as_rfc3339() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_796_113_845), "2026-12-01T08:30:45Z");
        assert_eq!(rfc3339_from_unix(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn container_refs_cannot_leave_their_path_segment() {
        use crate::docker::is_container_ref;
        for good in ["3f2c9a", "my-box_1.2", "a"] {
            assert!(is_container_ref(good), "{good}");
        }
        for bad in [
            "",
            "../images/x",
            "a/b",
            "a?force=true",
            "a#b",
            "%2e%2e",
            ".hidden",
            "-x",
        ] {
            assert!(!is_container_ref(bad), "{bad}");
        }
    }

    #[test]
    fn references_split_into_name_and_tag() {
        let split = |s: &str| split_reference(s);
        assert_eq!(split("busybox"), ("busybox".into(), Some("latest".into())));
        assert_eq!(
            split("busybox:1.36"),
            ("busybox".into(), Some("1.36".into()))
        );
        assert_eq!(
            split("127.0.0.1:5000/alknet/test"),
            ("127.0.0.1:5000/alknet/test".into(), Some("latest".into()))
        );
        assert_eq!(
            split("127.0.0.1:5000/test:v2"),
            ("127.0.0.1:5000/test".into(), Some("v2".into()))
        );
        assert_eq!(split("x@sha256:ab"), ("x@sha256:ab".into(), None));
    }
}
