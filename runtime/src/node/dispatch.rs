//! Transport-neutral dispatch of one request (design §5 dispatch order, §4.5 errors, §4.6
//! deadlines).
//!
//! Every transport turns what it received into a [`Request`] and hands it to one of two entry
//! points, one per shape: [`unary`] runs a query/mutation to its answer, [`stream`] sets up a
//! subscription and returns its items. Both resolve the request (lookup → access → input
//! validation → kind check) and run it with deadlines, panic isolation and error
//! normalization. Nested calls from [`Env`](crate::Env) go through the same functions.
//! Transports only move bytes; the rules live here once.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use alknet_spec::{OperationName, Visibility};
use futures_util::{FutureExt, Stream};
use serde_json::Value;
use tokio::time::{Instant, Sleep};

use super::request::Request;
use crate::access;
use crate::context::Context;
use crate::error::CallError;
use crate::registry::{Handler, OutputStream, RegisteredOperation, Registry, StreamFuture};
use crate::wire::JsonOutput;

/// Runs a query/mutation to its answer. A subscription is `INVALID_OPERATION_TYPE` (after the
/// lookup, access and input checks, as design §5 orders them).
pub(crate) async fn unary(
    registry: Arc<Registry>,
    default_timeout: Duration,
    request: Request,
) -> Result<JsonOutput, CallError> {
    let prepared = prepare(&registry, default_timeout, request, Shape::Unary).await?;
    run_unary(prepared).await
}

/// Sets up a subscription and returns its items. A query/mutation is `INVALID_OPERATION_TYPE`.
pub(crate) async fn stream(
    registry: Arc<Registry>,
    default_timeout: Duration,
    request: Request,
) -> Result<GuardedStream, CallError> {
    let prepared = prepare(&registry, default_timeout, request, Shape::Stream).await?;
    Ok(run_stream(prepared))
}

/// Whether `operation_id` names a subscription this request could reach: for callers that did
/// not say which shape they expect (the wire's `stream` field is optional).
pub(crate) fn is_subscription(registry: &Registry, operation_id: &str) -> bool {
    OperationName::parse_wire(operation_id)
        .ok()
        .and_then(|name| registry.get(name.as_str()))
        .is_some_and(|op| !op.spec().op_type.is_unary())
}

/// The shape a caller expects: one answer, or a stream of items.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Unary,
    Stream,
}

/// A request that passed every check and is ready to run.
struct Prepared {
    op: Arc<RegisteredOperation>,
    ctx: Context,
    input: Value,
}

/// Resolves a request in the order of design §5. Errors are the answer to send.
async fn prepare(
    registry: &Arc<Registry>,
    default_timeout: Duration,
    request: Request,
    shape: Shape,
) -> Result<Prepared, CallError> {
    let not_found =
        || CallError::not_found(format!("operation `{}` not found", request.operation_id));
    let name = OperationName::parse_wire(&request.operation_id).map_err(|_| not_found())?;
    let op = registry
        .get(name.as_str())
        .filter(|op| request.internal || op.spec().visibility == Visibility::External)
        .ok_or_else(not_found)?;
    let spec = op.spec();
    let ownership = spec
        .access_control
        .resource_type
        .as_deref()
        .and_then(|resource_type| registry.ownership(resource_type));
    access::authorize(
        spec,
        request.meta.identity.as_deref(),
        &request.input,
        ownership,
    )
    .await?;
    op.validate_input(&request.input)?;
    let is_stream = !spec.op_type.is_unary();
    if (shape == Shape::Stream) != is_stream {
        return Err(CallError::invalid_operation_type(if is_stream {
            format!("`{}` is a subscription: subscribe to it", spec.name)
        } else {
            format!(
                "`{}` is a {}: call it, do not subscribe",
                spec.name,
                spec.op_type.as_str()
            )
        }));
    }
    if let Some(after) = request.meta.resume_after
        && !spec.resumable
    {
        return Err(CallError::invalid_input(
            format!(
                "`{}` cannot resume after item {after}: it is not resumable; subscribe again from the start",
                spec.name
            ),
            "",
        ));
    }
    let requested = request.timeout_ms.map(Duration::from_millis);
    let timeout = if is_stream {
        requested
    } else {
        Some(requested.map_or(default_timeout, |t| t.min(default_timeout)))
    };
    let own_deadline = timeout.map(|t| Instant::now() + t);
    let deadline = match (request.deadline, own_deadline) {
        (Some(inherited), Some(own)) => Some(inherited.min(own)),
        (inherited, own) => inherited.or(own),
    };
    let ctx = Context::new(
        request.meta,
        deadline,
        Arc::clone(registry),
        op.composition().cloned(),
        default_timeout,
    );
    Ok(Prepared {
        op,
        ctx,
        input: request.input,
    })
}

fn panic_error(op: &RegisteredOperation, payload: &(dyn std::any::Any + Send)) -> CallError {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    tracing::error!(operation = %op.spec().name, panic = what, "handler panicked");
    CallError::internal("the handler panicked")
}

fn timeout_error(ctx: &Context) -> CallError {
    ctx.meta.cancel.cancel();
    CallError::timeout("the deadline expired")
}

/// Runs a query/mutation to its answer: deadline, panic isolation, error normalization.
/// Cancellation is the caller's to watch: dropping this future drops the handler.
async fn run_unary(prepared: Prepared) -> Result<JsonOutput, CallError> {
    let Prepared { op, ctx, input } = prepared;
    let Handler::Unary(handler) = op.handler() else {
        return Err(CallError::internal("operation is not a query/mutation"));
    };
    let deadline = ctx.deadline;
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx.clone(), input)));
    let future = match started {
        Ok(future) => AssertUnwindSafe(future).catch_unwind(),
        Err(payload) => return Err(panic_error(&op, payload.as_ref())),
    };
    let outcome = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, future).await {
            Ok(outcome) => outcome,
            Err(_) => return Err(timeout_error(&ctx)),
        },
        None => future.await,
    };
    match outcome {
        Ok(result) => result.map_err(|e| e.for_operation(op.spec())),
        Err(payload) => Err(panic_error(&op, payload.as_ref())),
    }
}

/// Runs a subscription as a stream of normalized items. The first `Err` item is terminal: the
/// stream ends after it. Panics in setup or in the stream become one `INTERNAL` item.
fn run_stream(prepared: Prepared) -> GuardedStream {
    let Prepared { op, ctx, input } = prepared;
    let setup = match op.handler() {
        Handler::Subscription(handler) => {
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx.clone(), input))) {
                Ok(setup) => State::Setup(setup),
                Err(payload) => State::Failed(Some(panic_error(&op, payload.as_ref()))),
            }
        }
        Handler::Unary(_) => {
            State::Failed(Some(CallError::internal("operation is not a subscription")))
        }
    };
    GuardedStream {
        deadline: ctx.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        op,
        ctx,
        state: setup,
    }
}

enum State {
    Setup(StreamFuture),
    Running(OutputStream),
    Failed(Option<CallError>),
    Done,
}

/// The items of a running subscription, as [`stream`] returns them: deadline, panic isolation
/// and error normalization applied; the first `Err` item is the last.
pub(crate) struct GuardedStream {
    op: Arc<RegisteredOperation>,
    ctx: Context,
    deadline: Option<Pin<Box<Sleep>>>,
    state: State,
}

impl GuardedStream {
    fn fail(&mut self, error: CallError) -> Poll<Option<Result<JsonOutput, CallError>>> {
        self.state = State::Done;
        Poll::Ready(Some(Err(error.for_operation(self.op.spec()))))
    }
}

impl Stream for GuardedStream {
    type Item = Result<JsonOutput, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let State::Failed(error) = &mut this.state {
            let error = error
                .take()
                .unwrap_or_else(|| CallError::internal("stream failed"));
            return this.fail(error);
        }
        if matches!(this.state, State::Done) {
            return Poll::Ready(None);
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            let error = timeout_error(&this.ctx);
            return this.fail(error);
        }
        loop {
            match &mut this.state {
                State::Setup(setup) => {
                    let polled =
                        std::panic::catch_unwind(AssertUnwindSafe(|| setup.poll_unpin(cx)));
                    match polled {
                        Err(payload) => {
                            let error = panic_error(&this.op, payload.as_ref());
                            return this.fail(error);
                        }
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Err(error))) => return this.fail(error),
                        Ok(Poll::Ready(Ok(stream))) => this.state = State::Running(stream),
                    }
                }
                State::Running(stream) => {
                    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        stream.as_mut().poll_next(cx)
                    }));
                    return match polled {
                        Err(payload) => {
                            let error = panic_error(&this.op, payload.as_ref());
                            this.fail(error)
                        }
                        Ok(poll) => match ready!(poll) {
                            Some(Ok(item)) => Poll::Ready(Some(Ok(item))),
                            Some(Err(error)) => this.fail(error),
                            None => {
                                this.state = State::Done;
                                Poll::Ready(None)
                            }
                        },
                    };
                }
                State::Failed(_) | State::Done => return Poll::Ready(None),
            }
        }
    }
}
