//! The operation registry: specs, compiled input validators and handlers.
//!
//! A [`Registry`] is filled before serving and then shared read-only by every connection. Each
//! registration is checked: the spec against the IR rules, the handler kind against `op_type`,
//! the input schema by compiling it, and the name against duplicates. Discovery
//! (`services/list`, `services/schema`) is built in.
//!
//! Operations that come and go while the node serves (a federation's members) live under a
//! name prefix reserved for them, changed through the [`LiveOperations`] handle
//! [`Registry::live`] gives; everything else is fixed once serving starts.
//!
//! Besides operations a registry holds what handlers share: application state
//! ([`Registry::provide`], read with [`Context::state`]), ownership providers for resource
//! checks ([`Registry::set_ownership`]), and for composing operations the authority and
//! allow-list their nested calls run under ([`Registry::register_composed`]).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use alknet_spec::{OpType, OperationSpec, SpecBundle, SpecError};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::access::OwnershipProvider;
use crate::context::Context;
use crate::error::CallError;
use crate::identity::Identity;
use crate::wire::JsonOutput;

/// The future a query/mutation handler returns.
pub type UnaryFuture = BoxFuture<'static, Result<JsonOutput, CallError>>;
/// The stream of outputs a subscription handler produces. An `Err` item ends it.
pub type OutputStream = BoxStream<'static, Result<JsonOutput, CallError>>;
/// A stream of JSON items, as a caller receives a subscription. An `Err` item ends it.
pub type ValueStream = BoxStream<'static, Result<Value, CallError>>;
/// The future a subscription handler returns: setup that may fail, then the stream.
pub type StreamFuture = BoxFuture<'static, Result<OutputStream, CallError>>;

type UnaryFn = dyn Fn(Context, Value) -> UnaryFuture + Send + Sync;
type SubscriptionFn = dyn Fn(Context, Value) -> StreamFuture + Send + Sync;

/// The code behind an operation. Its kind must match the spec's `op_type`.
#[derive(Clone)]
pub enum Handler {
    /// A query or mutation: one input, one output.
    Unary(Arc<UnaryFn>),
    /// A subscription: one input, a stream of outputs.
    Subscription(Arc<SubscriptionFn>),
}

impl Handler {
    /// A query/mutation handler over JSON values.
    pub fn unary<F, Fut>(f: F) -> Self
    where
        F: Fn(Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CallError>> + Send + 'static,
    {
        Handler::Unary(Arc::new(move |ctx, input| {
            f(ctx, input).map(|r| r.map(JsonOutput::Value)).boxed()
        }))
    }

    /// A subscription handler over JSON values.
    pub fn subscription<F, Fut, S>(f: F) -> Self
    where
        F: Fn(Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, CallError>> + Send + 'static,
        S: Stream<Item = Result<Value, CallError>> + Send + 'static,
    {
        Handler::Subscription(Arc::new(move |ctx, input| {
            f(ctx, input)
                .map(|r| r.map(|items| items.map(|item| item.map(JsonOutput::Value)).boxed()))
                .boxed()
        }))
    }

    /// A query/mutation handler over serde types: the input is deserialized (after schema
    /// validation) and the output serialized.
    pub fn typed_unary<I, O, F, Fut>(f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(Context, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, CallError>> + Send + 'static,
    {
        let f = Arc::new(f);
        Handler::Unary(Arc::new(move |ctx, input| {
            let f = Arc::clone(&f);
            async move {
                let input = from_input::<I>(input)?;
                Ok(to_output(f(ctx, input).await?))
            }
            .boxed()
        }))
    }

    /// A subscription handler over serde types.
    pub fn typed_subscription<I, O, F, Fut, S>(f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(Context, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, CallError>> + Send + 'static,
        S: Stream<Item = Result<O, CallError>> + Send + 'static,
    {
        let f = Arc::new(f);
        Handler::Subscription(Arc::new(move |ctx, input| {
            let f = Arc::clone(&f);
            async move {
                let input = from_input::<I>(input)?;
                let stream = f(ctx, input).await?;
                Ok(stream.map(|item| item.map(to_output)).boxed())
            }
            .boxed()
        }))
    }

    fn kind(&self) -> &'static str {
        match self {
            Handler::Unary(_) => "query/mutation",
            Handler::Subscription(_) => "subscription",
        }
    }
}

fn from_input<I: DeserializeOwned + 'static>(input: Value) -> Result<I, CallError> {
    // A handler over `Value` takes the input as it is: no deep copy through serde.
    let input = match (Box::new(input) as Box<dyn Any>).downcast::<I>() {
        Ok(same) => return Ok(*same),
        Err(other) => *other.downcast::<Value>().expect("boxed a Value"),
    };
    // From a reference: the input is kept (not cloned) for the rare retry below.
    I::deserialize(&input).or_else(|first| {
        // JSON Schema calls 3.0 an integer; serde does not. Retry with integral floats as
        // integers before refusing input the schema accepted.
        let mut normalized = input;
        if integral_floats_to_integers(&mut normalized) {
            if let Ok(input) = serde_json::from_value(normalized) {
                return Ok(input);
            }
        }
        Err(CallError::invalid_input(
            format!("input does not match the handler's type: {first}"),
            "",
        ))
    })
}

/// Rewrites numbers like `3.0` as `3`; true when anything changed.
fn integral_floats_to_integers(value: &mut Value) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                *value = Value::from(f as i64);
                return true;
            }
            false
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| integral_floats_to_integers(v) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| integral_floats_to_integers(v) | changed),
        _ => false,
    }
}

/// A typed output, to be serialized straight into the answer; a `Value` stays one.
fn to_output<O: Serialize + Send + 'static>(output: O) -> JsonOutput {
    match (Box::new(output) as Box<dyn Any>).downcast::<Value>() {
        Ok(value) => JsonOutput::Value(*value),
        Err(other) => JsonOutput::Typed(other.downcast::<O>().expect("boxed an O")),
    }
}

/// Why an operation could not be registered. Registration happens at startup, so these are
/// configuration errors to fix, not conditions to handle at run time.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The spec breaks the IR rules.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The name is already registered.
    #[error("operation `{0}` is already registered")]
    Duplicate(String),
    /// The `services/` namespace belongs to discovery.
    #[error("operation `{0}`: the `services` namespace is reserved for discovery")]
    Reserved(String),
    /// A subscription handler for a query/mutation spec, or the reverse.
    #[error("operation `{name}` is a {op_type} but its handler is a {handler} handler")]
    KindMismatch {
        /// The operation.
        name: String,
        /// Its declared kind.
        op_type: &'static str,
        /// The kind of handler given.
        handler: &'static str,
    },
    /// A composition names an operation that cannot exist.
    #[error("operation `{name}`: composition: {source}")]
    Composition {
        /// The composing operation.
        name: String,
        /// The bad name.
        source: alknet_spec::NameError,
    },
    /// The name is outside the live prefix it was added under, or a static operation was
    /// registered under a prefix reserved for live operations (or the reverse).
    #[error("operation `{name}`: {problem}")]
    LivePrefix {
        /// The operation, or the prefix.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The input schema does not compile.
    #[error("operation `{name}`: input_schema is not a valid JSON Schema 2020-12: {message}")]
    BadInputSchema {
        /// The operation.
        name: String,
        /// What the compiler said.
        message: String,
    },
}

/// What a composing operation may do through [`Context::env`]: the identity its nested calls
/// run as (its declared authority, not the caller's) and the operations it may reach. Anything
/// not listed is `NOT_FOUND` to it; internal operations are reachable when listed.
#[derive(Debug, Clone, Default)]
pub struct Composition {
    /// The identity nested calls run under; `None` calls anonymously.
    pub authority: Option<Identity>,
    /// Operation names (registry form) the composer may call, locally or on its peer.
    pub operations: Vec<String>,
}

impl Composition {
    /// A composition acting as `authority`, allowed to call `operations`.
    pub fn new(
        authority: Identity,
        operations: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            authority: Some(authority),
            operations: operations.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `name` (registry form) is on the allow-list.
    pub fn allows(&self, name: &str) -> bool {
        self.operations.iter().any(|allowed| allowed == name)
    }
}

/// A registered operation: its spec, compiled input validator and handler.
pub struct RegisteredOperation {
    spec: OperationSpec,
    validator: Option<jsonschema::Validator>,
    handler: Handler,
    composition: Option<Arc<Composition>>,
}

impl RegisteredOperation {
    /// The operation's spec.
    pub fn spec(&self) -> &OperationSpec {
        &self.spec
    }

    /// The handler.
    pub fn handler(&self) -> &Handler {
        &self.handler
    }

    /// What the operation may call through its context's env, if it composes.
    pub fn composition(&self) -> Option<&Arc<Composition>> {
        self.composition.as_ref()
    }

    /// Checks `input` against the input schema: `INVALID_INPUT` naming the failing JSON pointer.
    pub fn validate_input(&self, input: &Value) -> Result<(), CallError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        match validator.validate(input) {
            Ok(()) => Ok(()),
            Err(error) => {
                let pointer = error.instance_path().as_str().to_owned();
                let at = if pointer.is_empty() { "/" } else { &pointer };
                Err(CallError::invalid_input(
                    format!("input at `{at}`: {}", error.masked()),
                    pointer,
                ))
            }
        }
    }
}

/// Operations by name, and what their handlers share. Build it, then hand it to a server or
/// client.
pub struct Registry {
    operations: HashMap<String, Arc<RegisteredOperation>>,
    ownership: HashMap<String, Arc<dyn OwnershipProvider>>,
    state: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    live: Arc<LiveTable>,
}

/// The operations added and removed while serving, shared by the registry and its
/// [`LiveOperations`] handles.
#[derive(Default)]
struct LiveTable {
    operations: RwLock<HashMap<String, Arc<RegisteredOperation>>>,
    /// The reserved namespaces.
    namespaces: RwLock<Vec<String>>,
    /// Bumped on every change, so what is derived from the operations (the OpenAPI document)
    /// knows to be rebuilt.
    generation: AtomicU64,
}

impl LiveTable {
    fn reserves(&self, namespace: &str) -> bool {
        self.namespaces
            .read()
            .expect("not poisoned")
            .iter()
            .any(|n| n == namespace)
    }
}

/// A handle that adds and removes operations in one namespace of a registry while its node
/// serves: what a federation uses to follow members joining and leaving. Cloning it gives
/// another handle to the same operations.
#[derive(Clone)]
pub struct LiveOperations {
    namespace: String,
    table: Arc<LiveTable>,
}

impl std::fmt::Debug for LiveOperations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOperations")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl LiveOperations {
    /// Adds an operation; its name must be in this handle's namespace and not taken.
    pub fn insert(&self, spec: OperationSpec, handler: Handler) -> Result<(), RegistryError> {
        let op = prepare(spec, handler, None)?;
        let name = op.spec.name.clone();
        if alknet_spec::namespace_of(&name) != self.namespace {
            return Err(RegistryError::LivePrefix {
                name,
                problem: format!("is not in the live namespace `{}`", self.namespace),
            });
        }
        let mut operations = self.table.operations.write().expect("not poisoned");
        if operations.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        operations.insert(name, Arc::new(op));
        self.table.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Removes every operation whose name starts with `prefix` (`fleet/b/`); returns how many.
    /// Calls already running go on; new calls get `NOT_FOUND`.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        let mut operations = self.table.operations.write().expect("not poisoned");
        let before = operations.len();
        operations.retain(|name, _| {
            !(name.starts_with(prefix) && alknet_spec::namespace_of(name) == self.namespace)
        });
        let removed = before - operations.len();
        if removed > 0 {
            self.table.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }

    /// The names of the live operations in this namespace, in order.
    pub fn names(&self) -> Vec<String> {
        let operations = self.table.operations.read().expect("not poisoned");
        let mut names: Vec<String> = operations
            .keys()
            .filter(|name| alknet_spec::namespace_of(name) == self.namespace)
            .cloned()
            .collect();
        names.sort();
        names
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry holding only the built-in discovery operations.
    pub fn new() -> Self {
        let mut registry = Registry {
            operations: HashMap::new(),
            ownership: HashMap::new(),
            state: HashMap::new(),
            live: Arc::default(),
        };
        for (spec, handler) in crate::discovery::builtins() {
            registry
                .insert(spec, handler, None)
                .expect("built-in operations are valid");
        }
        registry
    }

    /// Registers an operation declared with `#[operation]`: `registry.register::<AddOp>()`.
    pub fn register<O: crate::typed::ServeOperation>(&mut self) -> Result<(), RegistryError> {
        self.register_with(O::spec(), O::handler(), O::composition().map(Arc::new))
    }

    /// Registers an operation from its spec and a handler over JSON values.
    pub fn register_handler(
        &mut self,
        spec: OperationSpec,
        handler: Handler,
    ) -> Result<(), RegistryError> {
        self.register_with(spec, handler, None)
    }

    /// Registers an operation that calls others through [`Context::env`], under the authority
    /// and allow-list of `composition`.
    pub fn register_composed(
        &mut self,
        spec: OperationSpec,
        handler: Handler,
        composition: Composition,
    ) -> Result<(), RegistryError> {
        for name in &composition.operations {
            alknet_spec::validate_name(name).map_err(|source| RegistryError::Composition {
                name: spec.name.clone(),
                source,
            })?;
        }
        self.register_with(spec, handler, Some(Arc::new(composition)))
    }

    fn register_with(
        &mut self,
        spec: OperationSpec,
        handler: Handler,
        composition: Option<Arc<Composition>>,
    ) -> Result<(), RegistryError> {
        if spec.namespace == "services" || spec.name.starts_with("services/") {
            return Err(RegistryError::Reserved(spec.name));
        }
        if self.live.reserves(alknet_spec::namespace_of(&spec.name)) {
            return Err(RegistryError::LivePrefix {
                name: spec.name,
                problem: "its namespace is reserved for live operations".to_owned(),
            });
        }
        self.insert(spec, handler, composition)
    }

    /// Reserves the namespace `namespace` for operations added and removed while serving, and
    /// gives the handle that does it. Refused when operations are registered there already,
    /// or for discovery's `services`.
    pub fn live(&mut self, namespace: &str) -> Result<LiveOperations, RegistryError> {
        let taken = namespace == "services"
            || !is_name_segment(namespace)
            || self
                .operations
                .keys()
                .any(|name| alknet_spec::namespace_of(name) == namespace);
        if taken {
            return Err(RegistryError::LivePrefix {
                name: namespace.to_owned(),
                problem: "cannot be a live namespace (not one segment, reserved, or in use)"
                    .to_owned(),
            });
        }
        let mut namespaces = self.live.namespaces.write().expect("not poisoned");
        if !namespaces.iter().any(|n| n == namespace) {
            namespaces.push(namespace.to_owned());
        }
        Ok(LiveOperations {
            namespace: namespace.to_owned(),
            table: Arc::clone(&self.live),
        })
    }

    /// A number that changes whenever live operations are added or removed: what is derived
    /// from the operations (an OpenAPI document) is current while it stays the same.
    pub fn generation(&self) -> u64 {
        self.live.generation.load(Ordering::Acquire)
    }

    /// Makes `state` available to every handler as `ctx.state::<T>()`: a pool, a client, a
    /// configuration. One value per type.
    pub fn provide<T: Send + Sync + 'static>(&mut self, state: T) {
        self.state.insert(TypeId::of::<T>(), Arc::new(state));
    }

    /// The state of type `T`, if provided.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let state = Arc::clone(self.state.get(&TypeId::of::<T>())?);
        state.downcast::<T>().ok()
    }

    /// Decides resource checks for operations whose access names `resource_type`.
    pub fn set_ownership(
        &mut self,
        resource_type: impl Into<String>,
        provider: Arc<dyn OwnershipProvider>,
    ) {
        self.ownership.insert(resource_type.into(), provider);
    }

    /// The ownership provider for `resource_type`.
    pub fn ownership(&self, resource_type: &str) -> Option<&dyn OwnershipProvider> {
        self.ownership.get(resource_type).map(|p| p.as_ref())
    }

    fn insert(
        &mut self,
        spec: OperationSpec,
        handler: Handler,
        composition: Option<Arc<Composition>>,
    ) -> Result<(), RegistryError> {
        let op = prepare(spec, handler, composition)?;
        if self.operations.contains_key(&op.spec.name) {
            return Err(RegistryError::Duplicate(op.spec.name));
        }
        self.operations.insert(op.spec.name.clone(), Arc::new(op));
        Ok(())
    }

    /// The operation with this registry name (no leading slash), internal ones included.
    pub fn get(&self, name: &str) -> Option<Arc<RegisteredOperation>> {
        if let Some(op) = self.operations.get(name) {
            return Some(Arc::clone(op));
        }
        // Only names outside the fixed operations reach the lock.
        self.live
            .operations
            .read()
            .expect("not poisoned")
            .get(name)
            .cloned()
    }

    /// Every registered operation, built-ins and live ones included, in name order.
    pub fn operations(&self) -> Vec<Arc<RegisteredOperation>> {
        let mut ops: Vec<_> = self.operations.values().cloned().collect();
        ops.extend(
            self.live
                .operations
                .read()
                .expect("not poisoned")
                .values()
                .cloned(),
        );
        ops.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        ops
    }

    /// The spec bundle of the registered operations (internal ones included, discovery
    /// built-ins excluded): the input of `alknet-codegen`.
    pub fn spec_bundle(&self) -> SpecBundle {
        self.bundle_of(|_| true)
    }

    /// The spec bundle of what callers without a connection of their own (HTTP, MCP) can use:
    /// without the operations that [need a peer](Registry::needs_peer).
    pub fn spec_bundle_without_peer(&self) -> SpecBundle {
        self.bundle_of(|op| !self.needs_peer(&op.spec.name))
    }

    fn bundle_of(&self, keep: impl Fn(&RegisteredOperation) -> bool) -> SpecBundle {
        SpecBundle::new(
            self.operations()
                .into_iter()
                .filter(|op| !crate::discovery::is_builtin(&op.spec.name) && keep(op))
                .map(|op| op.spec.clone()),
        )
        .expect("registered specs are valid and unique")
    }

    /// Whether operation `name` calls back into its caller's side of the connection: its
    /// composition lists an operation this registry does not have, which only the peer can
    /// serve (`ctx.env().call_peer…`). Over HTTP or MCP there is no peer, so such operations
    /// are not advertised there (they would only answer `NOT_FOUND`).
    pub fn needs_peer(&self, name: &str) -> bool {
        self.get(name)
            .and_then(|op| op.composition().cloned())
            .is_some_and(|c| c.operations.iter().any(|listed| self.get(listed).is_none()))
    }
}

/// Whether `text` can be one segment of an operation name (`A-Za-z0-9_-`, not empty): what
/// import names, node ids and live namespaces become part of.
pub(crate) fn is_name_segment(text: &str) -> bool {
    !text.contains('/') && alknet_spec::validate_name(&format!("{text}/x")).is_ok()
}

/// Checks an operation (spec rules, handler kind, input schema) and compiles its validator.
fn prepare(
    mut spec: OperationSpec,
    handler: Handler,
    composition: Option<Arc<Composition>>,
) -> Result<RegisteredOperation, RegistryError> {
    spec.normalize();
    spec.validate()?;
    let matches = matches!(
        (&handler, spec.op_type),
        (Handler::Unary(_), OpType::Query | OpType::Mutation)
            | (Handler::Subscription(_), OpType::Subscription)
    );
    if !matches {
        return Err(RegistryError::KindMismatch {
            name: spec.name,
            op_type: spec.op_type.as_str(),
            handler: handler.kind(),
        });
    }
    let validator = compile_input_schema(&spec)?;
    Ok(RegisteredOperation {
        spec,
        validator,
        handler,
        composition,
    })
}

fn compile_input_schema(
    spec: &OperationSpec,
) -> Result<Option<jsonschema::Validator>, RegistryError> {
    compile_schema(&spec.input_schema).map_err(|message| RegistryError::BadInputSchema {
        name: spec.name.clone(),
        message,
    })
}

/// A 2020-12 validator for `schema`; `None` for a schema that accepts anything (`true`, `{}`),
/// which needs no check.
pub(crate) fn compile_schema(schema: &Value) -> Result<Option<jsonschema::Validator>, String> {
    let accepts_anything = match schema {
        Value::Bool(true) => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    };
    if accepts_anything {
        return Ok(None);
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unary() -> Handler {
        Handler::unary(|_ctx, input| async move { Ok(input) })
    }

    fn subscription() -> Handler {
        Handler::subscription(|_ctx, _input| async move { Ok(futures_util::stream::empty()) })
    }

    fn spec(name: &str, op_type: OpType) -> OperationSpec {
        OperationSpec::new(name, op_type).unwrap()
    }

    #[test]
    fn registration_checks() {
        let mut registry = Registry::new();
        registry
            .register_handler(spec("a/query", OpType::Query), unary())
            .unwrap();
        registry
            .register_handler(spec("a/stream", OpType::Subscription), subscription())
            .unwrap();

        let duplicate = registry.register_handler(spec("a/query", OpType::Mutation), unary());
        assert!(matches!(duplicate, Err(RegistryError::Duplicate(_))));
        let mismatch = registry.register_handler(spec("a/m", OpType::Mutation), subscription());
        assert!(matches!(mismatch, Err(RegistryError::KindMismatch { .. })));
        let mismatch = registry.register_handler(spec("a/s", OpType::Subscription), unary());
        assert!(
            mismatch.unwrap_err().to_string().contains("subscription"),
            "the message names the kinds"
        );
        let reserved = registry.register_handler(spec("services/mine", OpType::Query), unary());
        assert!(matches!(reserved, Err(RegistryError::Reserved(_))));
        let bad_schema = registry.register_handler(
            spec("a/bad", OpType::Query).with_input_schema(json!({"type": "no-such-type"})),
            unary(),
        );
        assert!(matches!(
            bad_schema,
            Err(RegistryError::BadInputSchema { .. })
        ));
        let mut bad_spec = spec("a/ns", OpType::Query);
        bad_spec.namespace = "other".into();
        assert!(matches!(
            registry.register_handler(bad_spec, unary()),
            Err(RegistryError::Spec(_))
        ));

        let bundle = registry.spec_bundle();
        let names: Vec<&str> = bundle
            .operations
            .iter()
            .map(|op| op.name.as_str())
            .collect();
        assert_eq!(names, ["a/query", "a/stream"], "built-ins are not exported");
        assert!(registry.get("services/list").is_some());
    }

    #[test]
    fn input_validation_names_the_pointer() {
        let mut registry = Registry::new();
        registry
            .register_handler(
                spec("a/v", OpType::Query).with_input_schema(json!({
                    "type": "object",
                    "properties": {"items": {"type": "array", "items": {"type": "integer"}}}
                })),
                unary(),
            )
            .unwrap();
        let op = registry.get("a/v").unwrap();
        op.validate_input(&json!({"items": [1, 2]})).unwrap();
        let error = op
            .validate_input(&json!({"items": [1, "two"]}))
            .unwrap_err();
        assert_eq!(error.code, "INVALID_INPUT");
        assert_eq!(error.details, Some(json!({"pointer": "/items/1"})));
        let error = op.validate_input(&json!("not an object")).unwrap_err();
        assert_eq!(error.details, Some(json!({"pointer": ""})));
    }
}
