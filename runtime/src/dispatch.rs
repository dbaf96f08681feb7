//! Transport-neutral dispatch of one request (design §5 dispatch order, §4.5 errors, §4.6
//! deadlines).
//!
//! Every transport turns what it received into a [`Request`] and awaits [`dispatch`]: it
//! resolves the request (lookup → access → input validation → kind check) and runs it with
//! deadlines, panic isolation and error normalization. Nested calls from [`crate::env`] go
//! through the same function. Transports only move bytes; the rules live here once.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use alknet_spec::{OperationName, Visibility};
use futures_util::{FutureExt, Stream};
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::access;
use crate::connection::Connection;
use crate::context::Context;
use crate::error::CallError;
use crate::identity::Identity;
use crate::registry::{
    Handler, ItemStream, RegisteredOperation as Operation, Registry, StreamFuture,
};

/// One request as a transport received it (or as a composer made it).
pub(crate) struct Request {
    pub id: String,
    pub parent_id: Option<String>,
    pub operation_id: String,
    pub input: Value,
    pub timeout_ms: Option<u64>,
    /// An upper bound inherited from a parent request.
    pub deadline: Option<Instant>,
    /// `Some(true)`: the caller expects a stream; `Some(false)`: one answer; `None`: either.
    pub expect_stream: Option<bool>,
    pub identity: Option<Arc<Identity>>,
    pub peer: Option<Connection>,
    pub cancel: CancellationToken,
    /// Nested call from a composition: internal operations are reachable.
    pub internal: bool,
}

/// What a request comes to: one answer, or a stream of items.
pub(crate) enum Answer {
    /// The output or error of a query/mutation, or the one error of a subscription that could
    /// not start.
    Unary(Result<Value, CallError>),
    /// A running subscription.
    Stream(GuardedStream),
}

/// Resolves and runs a request. A query/mutation runs to its answer; a subscription is set up
/// and returned as a stream.
pub(crate) async fn dispatch(
    registry: Arc<Registry>,
    default_timeout: Duration,
    request: Request,
) -> Answer {
    match prepare(&registry, default_timeout, request).await {
        Err(error) => Answer::Unary(Err(error)),
        Ok(prepared) if prepared.op.spec().op_type.is_unary() => {
            Answer::Unary(run_unary(prepared).await)
        }
        Ok(prepared) => Answer::Stream(run_stream(prepared)),
    }
}

/// A request that passed every check and is ready to run.
pub(crate) struct Prepared {
    pub op: Arc<Operation>,
    pub ctx: Context,
    pub input: Value,
}

/// Resolves a request in the order of design §5. Errors are the answer to send.
async fn prepare(
    registry: &Arc<Registry>,
    default_timeout: Duration,
    request: Request,
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
    access::authorize(spec, request.identity.as_deref(), &request.input, ownership).await?;
    op.validate_input(&request.input)?;
    let is_stream = !spec.op_type.is_unary();
    if let Some(expect_stream) = request.expect_stream
        && expect_stream != is_stream
    {
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
    let ctx = Context {
        request_id: request.id,
        parent_id: request.parent_id,
        identity: request.identity,
        deadline,
        cancel: request.cancel,
        peer: request.peer,
        registry: Arc::clone(registry),
        composition: op.composition().cloned(),
        default_timeout,
        children: Arc::new(AtomicU64::new(0)),
    };
    Ok(Prepared {
        op: Arc::clone(op),
        ctx,
        input: request.input,
    })
}

fn panic_error(op: &Operation, payload: &(dyn std::any::Any + Send)) -> CallError {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    tracing::error!(operation = %op.spec().name, panic = what, "handler panicked");
    CallError::internal("the handler panicked")
}

fn timeout_error(ctx: &Context) -> CallError {
    ctx.cancel.cancel();
    CallError::timeout("the deadline expired")
}

/// Runs a query/mutation to its answer: deadline, panic isolation, error normalization.
/// Cancellation is the caller's to watch: dropping this future drops the handler.
async fn run_unary(prepared: Prepared) -> Result<Value, CallError> {
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
    Running(ItemStream),
    Failed(Option<CallError>),
    Done,
}

/// The stream [`run_stream`] returns.
pub(crate) struct GuardedStream {
    op: Arc<Operation>,
    ctx: Context,
    deadline: Option<Pin<Box<Sleep>>>,
    state: State,
}

impl GuardedStream {
    fn fail(&mut self, error: CallError) -> Poll<Option<Result<Value, CallError>>> {
        self.state = State::Done;
        Poll::Ready(Some(Err(error.for_operation(self.op.spec()))))
    }
}

impl Stream for GuardedStream {
    type Item = Result<Value, CallError>;

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
