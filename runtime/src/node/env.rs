//! [`Env`]: nested calls from inside a handler (design §6).
//!
//! An operation registered with [`Registry::register_composed`](crate::Registry::register_composed)
//! declares an authority (an [`Identity`](crate::Identity)) and an allow-list. Its nested calls:
//! - run as that authority, not as the original caller, through the same dispatch rules as any
//!   call (access, validation, kind);
//! - may reach only the listed operations (internal ones included); anything else is
//!   `NOT_FOUND`;
//! - get fresh ids (`<parent id>.<n>`) and the parent as `parent_id`;
//! - inherit the parent's remaining deadline (a shorter `timeout` may be given);
//! - are aborted with their parent: an in-process child is part of the parent's future and is
//!   dropped with it, and its cancellation signal is a child of the parent's; a child on the
//!   peer is a call on the connection, aborted (`call.aborted`) when dropped. With
//!   [`NestedOptions::continue_running`] a child is detached and runs to its end instead.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alknet_spec::OperationName;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dispatch;
use super::request::Request;
use crate::context::{Context, RequestMeta};
use crate::error::CallError;
use crate::peer::{CallOptions, Peer};
use crate::registry::ValueStream;
use crate::typed::{OpError, Operation};
use crate::wire::JsonOutput;

/// Options for one nested call.
#[derive(Debug, Clone, Default)]
pub struct NestedOptions {
    /// A deadline shorter than the inherited one.
    pub timeout: Option<Duration>,
    /// Keep the child running if the parent is aborted (the policy is local: it never goes on
    /// the wire). The parent may still wait for the child's answer.
    pub continue_running: bool,
}

impl NestedOptions {
    /// Options that detach the child from its parent's abort.
    pub fn continue_running() -> Self {
        Self {
            continue_running: true,
            ..Self::default()
        }
    }
}

/// The nested-call environment of one request. Get it with [`Context::env`].
pub struct Env {
    ctx: Context,
}

impl Context {
    /// Nested calls: to operations of this node or of the peer, under the running operation's
    /// declared authority (see [`Registry::register_composed`](crate::Registry::register_composed)).
    pub fn env(&self) -> Env {
        Env { ctx: self.clone() }
    }
}

impl Env {
    /// Checks the allow-list; anything not listed does not exist for this composer.
    fn allowed(&self, op: &str) -> Result<OperationName, CallError> {
        let not_found = || CallError::not_found(format!("operation `{op}` not found"));
        let name = OperationName::parse_wire(op).map_err(|_| not_found())?;
        match &self.ctx.composition {
            Some(composition) if composition.allows(name.as_str()) => Ok(name),
            _ => Err(not_found()),
        }
    }

    fn child_deadline(&self, options: &NestedOptions) -> Option<Instant> {
        let own = options.timeout.map(|t| Instant::now() + t);
        match (self.ctx.deadline, own) {
            (Some(parent), Some(own)) => Some(parent.min(own)),
            (parent, own) => parent.or(own),
        }
    }

    fn child_request(
        &self,
        name: &OperationName,
        input: Value,
        options: &NestedOptions,
    ) -> Request {
        let n = self.ctx.children.fetch_add(1, Ordering::Relaxed) + 1;
        let parent = &self.ctx.meta;
        let identity = self
            .ctx
            .composition
            .as_ref()
            .and_then(|c| c.authority.clone())
            .map(Arc::new);
        let cancel = if options.continue_running {
            CancellationToken::new()
        } else {
            parent.cancel.child_token()
        };
        let mut request = Request::new(
            format!("{}.{n}", parent.id),
            name.wire_id(),
            input,
            identity,
            cancel,
        );
        request.meta = RequestMeta {
            parent_id: Some(parent.id.clone()),
            peer: parent.peer.clone(),
            ..request.meta
        };
        request.deadline = self.child_deadline(options);
        request.internal = true;
        request
    }

    /// Calls an `#[operation]` of this node with typed input and output.
    pub async fn call<O: Operation>(
        &self,
        input: &O::Input,
    ) -> Result<O::Output, OpError<O::Error>> {
        self.call_with::<O>(input, NestedOptions::default()).await
    }

    /// [`Env::call`] with options.
    pub async fn call_with<O: Operation>(
        &self,
        input: &O::Input,
        options: NestedOptions,
    ) -> Result<O::Output, OpError<O::Error>> {
        crate::typed::typed_call::<O, _, _>(input, |input| {
            self.call_json_with(O::NAME, input, options)
        })
        .await
    }

    /// Calls an `#[operation]` that the peer of this request's connection registered.
    pub async fn call_peer<O: Operation>(
        &self,
        input: &O::Input,
    ) -> Result<O::Output, OpError<O::Error>> {
        crate::typed::typed_call::<O, _, _>(input, |input| self.call_peer_json(O::NAME, input))
            .await
    }

    /// Calls a query/mutation of this node by name, with JSON values.
    pub async fn call_json(&self, op: &str, input: Value) -> Result<Value, CallError> {
        self.call_json_with(op, input, NestedOptions::default())
            .await
    }

    /// [`Env::call_json`] with options.
    pub async fn call_json_with(
        &self,
        op: &str,
        input: Value,
        options: NestedOptions,
    ) -> Result<Value, CallError> {
        let name = self.allowed(op)?;
        let request = self.child_request(&name, input, &options);
        let cancel = request.meta.cancel.clone();
        let child = dispatch::unary(
            Arc::clone(&self.ctx.registry),
            self.ctx.default_timeout,
            request,
        );
        let child = child.map(|outcome| outcome.and_then(JsonOutput::into_value));
        if options.continue_running {
            detach(child).await
        } else {
            // Dropping this future (the parent was aborted) drops the child with it; cancel its
            // signal too so whatever the child spawned stops.
            let _cancel_on_drop = cancel.drop_guard();
            child.await
        }
    }

    /// Subscribes to a subscription of this node by name. The stream is dropped with the parent.
    pub async fn subscribe_json(&self, op: &str, input: Value) -> Result<ValueStream, CallError> {
        let name = self.allowed(op)?;
        let request = self.child_request(&name, input, &NestedOptions::default());
        let guard = request.meta.cancel.clone().drop_guard();
        let items = dispatch::stream(
            Arc::clone(&self.ctx.registry),
            self.ctx.default_timeout,
            request,
        )
        .await?;
        Ok(items
            .map(move |item| {
                let _ = &guard;
                item.and_then(JsonOutput::into_value)
            })
            .boxed())
    }

    /// Calls a query/mutation that the peer of this request's connection registered (the
    /// protocol is symmetric), by name. The remaining deadline goes along as `timeout_ms`.
    pub async fn call_peer_json(&self, op: &str, input: Value) -> Result<Value, CallError> {
        self.call_peer_json_with(op, input, NestedOptions::default())
            .await
    }

    /// [`Env::call_peer_json`] with options.
    pub async fn call_peer_json_with(
        &self,
        op: &str,
        input: Value,
        options: NestedOptions,
    ) -> Result<Value, CallError> {
        let (name, peer, call_options) = self.peer_target(op, &options)?;
        let call = peer.call_json(name.as_str(), input, call_options);
        if options.continue_running {
            detach(call).await
        } else {
            call.await
        }
    }

    /// Subscribes to a subscription on the peer by name. Dropping the stream (or the parent)
    /// aborts it.
    pub async fn subscribe_peer_json(
        &self,
        op: &str,
        input: Value,
    ) -> Result<ValueStream, CallError> {
        let (name, peer, call_options) = self.peer_target(op, &NestedOptions::default())?;
        peer.subscribe_json(name.as_str(), input, call_options)
            .await
    }

    /// What a call to the peer needs: the allowed name, the connection, and the remaining
    /// deadline as the call's timeout.
    fn peer_target(
        &self,
        op: &str,
        options: &NestedOptions,
    ) -> Result<(OperationName, Arc<dyn Peer>, CallOptions), CallError> {
        let name = self.allowed(op)?;
        let peer = self.ctx.meta.peer.clone().ok_or_else(|| {
            CallError::not_found("no peer: this request did not arrive over a connection")
        })?;
        let timeout = self
            .child_deadline(options)
            .map(|d| d.saturating_duration_since(Instant::now()));
        Ok((
            name,
            peer,
            CallOptions {
                timeout,
                ..CallOptions::default()
            },
        ))
    }
}

/// Runs a child on its own task: dropping the waiting parent does not stop it.
async fn detach(
    child: impl Future<Output = Result<Value, CallError>> + Send + 'static,
) -> Result<Value, CallError> {
    tokio::spawn(child)
        .await
        .unwrap_or_else(|_| Err(CallError::internal("the nested call panicked")))
}
