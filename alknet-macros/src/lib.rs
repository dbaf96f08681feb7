//! # alknet-macros
//!
//! The code-first path of alknet (design §9). Use it through the `alknet` crate, which
//! re-exports both macros.
//!
//! ## `#[operation]`
//!
//! ```ignore
//! use alknet::{operation, CallError};
//!
//! /// Adds two numbers.               <- the description
//! #[operation(query, name = "math/add")]
//! async fn add(input: AddInput) -> Result<AddOutput, CallError> {
//!     Ok(AddOutput { sum: input.a + input.b })
//! }
//! // generates `AddOp`: registry.register::<AddOp>(), conn.call::<AddOp>(&input)
//! ```
//!
//! The function must be `async`. Its arguments are, in any order: at most one **input** (any
//! type with `Serialize + Deserialize + JsonSchema`; none means the empty object
//! `alknet::Empty`), a `Context`, and any number of `State<T>` (application state provided with
//! `Registry::provide`). A query/mutation returns `Result<Output, Error>`; a subscription returns
//! `impl Stream<Item = Result<Item, Error>>`. `Error` is `CallError`, `OpError<E>` or a
//! `#[derive(DomainError)]` enum.
//!
//! Options, after the kind (`query`, `mutation` or `subscription`):
//!
//! | option | meaning |
//! |---|---|
//! | `name = "svc/op"` | registry name; default `<crate name>/<function name>` |
//! | `internal` | reachable only by composition |
//! | `scopes = ["a", "b"]` | all of these scopes are required |
//! | `scopes_any = ["x", "y"]` | one of these scopes is required |
//! | `resource(type = "container", action = "stop", id = "/containerId")` | resource check; `id` is the JSON Pointer of the resource id in the input |
//! | `errors = MyErrors` | the declared domain errors: a `#[derive(DomainError)]` enum |
//! | `deprecated` | marks the operation deprecated |
//! | `calls = ["svc/other"]` | operations `ctx.env()` may call (allow-list) |
//! | `authority(id = "svc/op", scopes = ["..."])` | the identity nested calls run as |
//!
//! The generated marker type is the function name in UpperCamelCase plus `Op` (`add` → `AddOp`,
//! `ask_peer` → `AskPeerOp`), with the function's visibility.
//!
//! ## `#[derive(DomainError)]`
//!
//! ```ignore
//! #[derive(Debug, DomainError)]
//! enum TransferError {
//!     /// Not enough money on the account.
//!     #[domain(code = "INSUFFICIENT_FUNDS", status = 409)]
//!     InsufficientFunds(Shortfall),   // details: any Serialize + Deserialize + JsonSchema type
//!     /// The account is frozen.
//!     #[domain(code = "ACCOUNT_FROZEN", status = 423, message = "this account is frozen")]
//!     Frozen,
//! }
//! ```
//!
//! Codes must be `UPPER_SNAKE_CASE` and not protocol codes; the status is the HTTP status
//! (400–599); the doc comment is the description and, unless `message` is given, the message.
//! `#[domain(declared_by = SomeOp)]` on the enum takes the declared list (descriptions,
//! statuses, details schemas) from the operation's spec instead: what `alknet-codegen` emits,
//! so a service file's own schemas are what discovery and OpenAPI show. The runtime's blanket
//! impls make every such enum an `IntoCallError` and convertible into `OpError<Self>`.

#![warn(missing_docs)]

mod domain_error;
mod operation;

use proc_macro::TokenStream;

/// Declares an operation from an async function. See the crate documentation.
#[proc_macro_attribute]
pub fn operation(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original: proc_macro2::TokenStream = item.clone().into();
    match operation::expand(attr.into(), item.into()) {
        Ok(expanded) => expanded.into(),
        // Keep the function as written, so the one error is all the user sees (no knock-on
        // "unused" warnings or missing-item errors).
        Err(error) => {
            let mut out = error.into_compile_error();
            out.extend(original);
            out.into()
        }
    }
}

/// Derives `alknet::DomainError` for an enum of declared errors. See the crate documentation.
#[proc_macro_derive(DomainError, attributes(domain))]
pub fn derive_domain_error(item: TokenStream) -> TokenStream {
    domain_error::expand(item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// The doc comment of an item, lines joined, common leading space trimmed.
pub(crate) fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}
