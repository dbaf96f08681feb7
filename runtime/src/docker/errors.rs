//! Daemon errors as the pack's declared errors (`CONTAINER_NOT_FOUND`, `IMAGE_NOT_FOUND`,
//! `IMAGE_PULL_FAILED`, `CONTAINER_CONFLICT`, `INVALID_CONTAINER_REQUEST`, `DOCKER_ERROR`): the
//! daemon's status says which, its message says what happened.

use bollard::errors::Error as BollardError;
use serde_json::json;

use crate::error::CallError;
use crate::typed::OpError;

/// What a failed daemon request was about, so a 404 becomes the right declared error.
#[derive(Clone, Copy)]
pub(super) enum Subject<'a> {
    Container(&'a str),
    Image(&'a str),
    /// A pull: any refusal is `IMAGE_PULL_FAILED`.
    Pull(&'a str),
    Daemon,
}

pub(super) fn container_not_found(id: &str) -> CallError {
    CallError::domain("CONTAINER_NOT_FOUND", format!("no such container: {id}"))
        .with_details(json!({ "id": id }))
}

pub(super) fn image_not_found(image: &str) -> CallError {
    CallError::domain("IMAGE_NOT_FOUND", format!("no such image: {image}"))
        .with_details(json!({ "image": image }))
}

pub(super) fn pull_failed(image: &str, why: &str) -> CallError {
    CallError::domain(
        "IMAGE_PULL_FAILED",
        format!("pulling {image} failed: {why}"),
    )
    .with_details(json!({ "image": image }))
}

pub(super) fn docker_error(why: impl std::fmt::Display) -> CallError {
    CallError::domain("DOCKER_ERROR", format!("Docker: {why}"))
}

/// The declared error for `error`, about `subject`.
pub(super) fn daemon_error(error: BollardError, subject: Subject<'_>) -> CallError {
    let (status, message) = match &error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => (Some(*status_code), message.clone()),
        BollardError::DockerStreamError { error } => (None, error.clone()),
        other => (None, other.to_string()),
    };
    match (subject, status) {
        (Subject::Pull(image), _) => pull_failed(image, &message),
        (Subject::Container(id), Some(404)) => container_not_found(id),
        (Subject::Image(image), Some(404)) => image_not_found(image),
        (_, Some(409)) => CallError::domain("CONTAINER_CONFLICT", message),
        (_, Some(400)) => CallError::domain("INVALID_CONTAINER_REQUEST", message),
        _ => docker_error(message),
    }
}

/// [`daemon_error`] for a typed handler.
pub(super) fn op_error<E>(error: BollardError, subject: Subject<'_>) -> OpError<E> {
    OpError::Call(daemon_error(error, subject))
}
