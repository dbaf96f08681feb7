//! Typed operations: what [`#[operation]`](crate::operation) generates and typed calls use.
//!
//! `#[operation]` turns an async function into a marker type implementing [`Operation`]: its
//! name, kind, input/output/error types, [`OperationSpec`] (schemas from schemars, JSON Schema
//! 2020-12) and [`Handler`]. With it:
//!
//! - `registry.register::<AddOp>()` registers it in one line;
//! - `conn.call::<AddOp>(&input).await` returns `Result<AddOutput, OpError<AddError>>`;
//! - `conn.subscribe::<TicksOp>(&input).await` returns a typed stream of items.
//!
//! Declared domain errors are enums deriving [`DomainError`](derive@crate::DomainError): the handler
//! returns the enum, the wire carries its code, HTTP status and details, and the caller gets the
//! same enum back in [`OpError::Domain`].

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use alknet_spec::{ErrorSpec, OpType, OperationSpec};
use futures_util::{Stream, StreamExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Context;
use crate::error::CallError;
use crate::registry::{Composition, Handler};

/// An operation known to Rust: what a caller needs for typed calls. Implemented by the marker
/// types of `#[operation]` and of `alknet-codegen`'s generated clients.
pub trait Operation: Send + Sync + 'static {
    /// Registry name, e.g. `math/add`.
    const NAME: &'static str;
    /// Query, mutation or subscription.
    const KIND: OpType;
    /// The input.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output; for a subscription, one item.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The declared domain errors ([`NoDomainError`] when there are none).
    type Error: DomainError;

    /// The IR of the operation.
    fn spec() -> OperationSpec;
}

/// An operation whose code is known statically: `#[operation]` functions. Register it with
/// `registry.register::<AddOp>()`.
pub trait ServeOperation: Operation {
    /// The code that serves it.
    fn handler() -> Handler;

    /// For composing operations: the authority and allow-list of nested calls.
    fn composition() -> Option<Composition> {
        None
    }
}

/// A boxed stream of typed items, as generated service traits return for subscriptions.
pub type ItemStream<T, E> = futures_util::stream::BoxStream<'static, Result<T, OpError<E>>>;

/// A set of declared domain errors, usually an enum with `#[derive(DomainError)]`.
pub trait DomainError: Sized + Send + 'static {
    /// The errors as the spec declares them: code, description, details schema, HTTP status.
    fn declared() -> Vec<ErrorSpec>;

    /// The `call.error` for this error.
    fn to_call_error(&self) -> CallError;

    /// Recognises one of these errors in a `call.error`; `None` for anything else.
    fn from_call_error(error: &CallError) -> Option<Self>;
}

/// The error type of operations that declare no domain errors. It has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDomainError {}

impl DomainError for NoDomainError {
    fn declared() -> Vec<ErrorSpec> {
        Vec::new()
    }

    fn to_call_error(&self) -> CallError {
        match *self {}
    }

    fn from_call_error(_: &CallError) -> Option<Self> {
        None
    }
}

impl fmt::Display for NoDomainError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

/// What a typed call fails with: one of the operation's declared errors, or any other
/// `call.error` (protocol codes, transport failures).
#[derive(Debug, Clone, PartialEq)]
pub enum OpError<E> {
    /// A declared domain error, as the handler returned it.
    Domain(E),
    /// Anything else.
    Call(CallError),
}

impl<E: DomainError> OpError<E> {
    /// Sorts a `call.error` into a declared error or a plain one.
    pub fn from_call_error(error: CallError) -> Self {
        match E::from_call_error(&error) {
            Some(domain) => OpError::Domain(domain),
            None => OpError::Call(error),
        }
    }

    /// The error as it travels on the wire.
    pub fn to_call_error(&self) -> CallError {
        match self {
            OpError::Domain(domain) => domain.to_call_error(),
            OpError::Call(error) => error.clone(),
        }
    }

    /// The wire code.
    pub fn code(&self) -> String {
        match self {
            OpError::Domain(domain) => domain.to_call_error().code,
            OpError::Call(error) => error.code.clone(),
        }
    }
}

impl<E> From<CallError> for OpError<E> {
    fn from(error: CallError) -> Self {
        OpError::Call(error)
    }
}

impl<E: DomainError> fmt::Display for OpError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_call_error(), f)
    }
}

impl<E: DomainError + fmt::Debug> std::error::Error for OpError<E> {}

/// Lets a handler use `?` on a typed nested call and answer with its error.
impl<E: DomainError> From<OpError<E>> for CallError {
    fn from(error: OpError<E>) -> Self {
        error.to_call_error()
    }
}

/// A typed call over a JSON call: encodes the input, sorts a failure into the operation's
/// declared errors, decodes the output. Shared by every typed entry point (connection, env).
pub(crate) async fn typed_call<O, F, Fut>(
    input: &O::Input,
    call: F,
) -> Result<O::Output, OpError<O::Error>>
where
    O: Operation,
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, CallError>>,
{
    let input = encode_input(input)?;
    let output = call(input).await.map_err(OpError::from_call_error)?;
    Ok(decode_output(output)?)
}

/// A typed input as the JSON a call carries.
pub(crate) fn encode_input<I: Serialize + ?Sized>(input: &I) -> Result<Value, CallError> {
    serde_json::to_value(input)
        .map_err(|e| CallError::invalid_input(format!("input not serializable: {e}"), ""))
}

/// An answer's output, as JSON text, parsed straight into the type the caller expects.
pub(crate) fn decode_output_text<O: DeserializeOwned>(output: &[u8]) -> Result<O, CallError> {
    serde_json::from_slice(output).map_err(|e| {
        CallError::internal(format!("the output does not match the expected type: {e}"))
    })
}

/// The JSON an answer carries as the typed output.
pub(crate) fn decode_output<O: DeserializeOwned>(output: Value) -> Result<O, CallError> {
    serde_json::from_value(output).map_err(|e| {
        CallError::internal(format!("the output does not match the expected type: {e}"))
    })
}

/// Errors a handler may return: [`CallError`], [`OpError`], or a [`DomainError`] enum (the
/// derive implements this for it).
pub trait IntoCallError {
    /// The `call.error` to send.
    fn into_call_error(self) -> CallError;
}

impl IntoCallError for CallError {
    fn into_call_error(self) -> CallError {
        self
    }
}

impl<E: DomainError> IntoCallError for OpError<E> {
    fn into_call_error(self) -> CallError {
        self.to_call_error()
    }
}

/// Every declared-error enum answers with its `call.error`.
impl<E: DomainError> IntoCallError for E {
    fn into_call_error(self) -> CallError {
        self.to_call_error()
    }
}

/// A declared error is an [`OpError::Domain`], so handlers can `?` it into a typed result.
impl<E: DomainError> From<E> for OpError<E> {
    fn from(error: E) -> Self {
        OpError::Domain(error)
    }
}

/// Application state a handler takes as an argument: `db: State<Pool>` is
/// `ctx.state::<Pool>()`, provided with [`Registry::provide`](crate::Registry::provide).
pub struct State<T>(pub Arc<T>);

impl<T: Send + Sync + 'static> State<T> {
    /// Takes the state from the context; `INTERNAL` when it was never provided.
    pub fn from_context(ctx: &Context) -> Result<Self, CallError> {
        ctx.state::<T>().map(State).ok_or_else(|| {
            CallError::internal(format!(
                "no state of type `{}` was provided to the registry",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<T> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

// The input of an operation whose function takes none. Its doc comment becomes the schema's
// description in every such spec, so it speaks to the caller.
/// No input: an empty object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// The JSON Schema (2020-12, shared types under `$defs`) of `T`, as the IR holds it.
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(T)).expect("a generated schema serializes");
    if let Value::Object(map) = &mut schema {
        // The IR says which dialect its schemas are; a copy in every schema adds nothing.
        map.remove("$schema");
    }
    schema
}

/// Implementation details of the code `#[operation]` and `#[derive(DomainError)]` generate.
/// Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::future::Future;

    pub use serde_json;

    /// A query/mutation handler over the operation's types.
    pub fn unary_handler<O, F, Fut>(f: F) -> Handler
    where
        O: Operation,
        F: Fn(Context, O::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O::Output, CallError>> + Send + 'static,
    {
        Handler::typed_unary(f)
    }

    /// A subscription handler over the operation's types.
    pub fn subscription_handler<O, F, Fut, S>(f: F) -> Handler
    where
        O: Operation,
        F: Fn(Context, O::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, CallError>> + Send + 'static,
        S: Stream<Item = Result<O::Output, CallError>> + Send + 'static,
    {
        Handler::typed_subscription(f)
    }

    /// Converts a handler's result to the wire error type.
    pub fn into_result<T, E: IntoCallError>(result: Result<T, E>) -> Result<T, CallError> {
        result.map_err(IntoCallError::into_call_error)
    }

    /// Converts a handler's stream items to the wire error type.
    pub fn into_stream<T: Send + 'static, E: IntoCallError + Send + 'static>(
        stream: impl Stream<Item = Result<T, E>> + Send + 'static,
    ) -> impl Stream<Item = Result<T, CallError>> + Send + 'static {
        stream.map(into_result)
    }

    /// Converts a generated service's item stream to the wire error type.
    pub fn op_error_stream<T: Send + 'static, E: DomainError>(
        items: ItemStream<T, E>,
    ) -> impl Stream<Item = Result<T, CallError>> + Send + 'static {
        items.map(|item| item.map_err(|error| error.to_call_error()))
    }

    /// Details of a domain error as JSON (`null` when it has none).
    pub fn details<T: Serialize>(details: &T) -> Value {
        serde_json::to_value(details).unwrap_or(Value::Null)
    }

    /// Reads a domain error's details back.
    pub fn parse_details<T: DeserializeOwned>(details: &Option<Value>) -> Option<T> {
        serde_json::from_value(details.clone().unwrap_or(Value::Null)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Point {
        x: i32,
        inner: Inner,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Inner {
        label: String,
    }

    #[test]
    fn schemas_are_self_contained_2020_12() {
        let schema = schema_of::<Point>();
        assert!(schema.get("$schema").is_none());
        assert_eq!(schema["properties"]["inner"]["$ref"], "#/$defs/Inner");
        assert_eq!(schema["$defs"]["Inner"]["type"], "object");
        assert_eq!(schema_of::<Empty>()["type"], "object");
    }
}
