//! `#[operation]`: options, the function's shape, and the generated marker type.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{
    Error, ExprArray, FnArg, GenericArgument, Ident, ItemFn, LitStr, PathArguments, ReturnType,
    Type, TypeParamBound,
};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Query,
    Mutation,
    Subscription,
}

struct Resource {
    kind: LitStr,
    action: LitStr,
    id: LitStr,
}

struct Authority {
    id: LitStr,
    scopes: Vec<LitStr>,
}

#[derive(Default)]
struct Options {
    kind: Option<Kind>,
    name: Option<LitStr>,
    internal: bool,
    scopes: Vec<LitStr>,
    scopes_any: Option<Vec<LitStr>>,
    resource: Option<Resource>,
    errors: Option<Type>,
    deprecated: bool,
    resumable: Option<Span>,
    calls: Option<Vec<LitStr>>,
    authority: Option<Authority>,
}

const KNOWN: &str = "query, mutation, subscription, name, internal, scopes, scopes_any, \
                     resource, errors, deprecated, resumable, calls, authority";

fn string_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<LitStr>> {
    let array: ExprArray = meta.value()?.parse()?;
    array
        .elems
        .iter()
        .map(|elem| match elem {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Ok(s.clone()),
            other => Err(Error::new(other.span(), "expected a string literal")),
        })
        .collect()
}

fn operation_name(lit: &LitStr) -> syn::Result<()> {
    alknet_spec::validate_name(&lit.value()).map_err(|e| Error::new(lit.span(), e))
}

impl Options {
    fn parse(attr: TokenStream) -> syn::Result<Options> {
        let mut options = Options::default();
        let mut seen = HashSet::new();
        let parser = syn::meta::parser(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let is_kind = matches!(key.as_str(), "query" | "mutation" | "subscription");
            let slot = if is_kind {
                "kind".to_owned()
            } else {
                key.clone()
            };
            if !seen.insert(slot) {
                return Err(meta.error(if is_kind {
                    "the operation kind is given twice".to_owned()
                } else {
                    format!("duplicate option `{key}`")
                }));
            }
            match key.as_str() {
                "query" => options.kind = Some(Kind::Query),
                "mutation" => options.kind = Some(Kind::Mutation),
                "subscription" => options.kind = Some(Kind::Subscription),
                "name" => {
                    let name: LitStr = meta.value()?.parse()?;
                    operation_name(&name)?;
                    options.name = Some(name);
                }
                "internal" => options.internal = true,
                "deprecated" => options.deprecated = true,
                "resumable" => options.resumable = Some(meta.path.span()),
                "scopes" => options.scopes = string_list(&meta)?,
                "scopes_any" => options.scopes_any = Some(string_list(&meta)?),
                "errors" => options.errors = Some(meta.value()?.parse()?),
                "calls" => {
                    let calls = string_list(&meta)?;
                    for call in &calls {
                        operation_name(call)?;
                    }
                    options.calls = Some(calls);
                }
                "resource" => {
                    let (mut kind, mut action, mut id) = (None, None, None);
                    meta.parse_nested_meta(|inner| {
                        let slot = if inner.path.is_ident("type") {
                            &mut kind
                        } else if inner.path.is_ident("action") {
                            &mut action
                        } else if inner.path.is_ident("id") {
                            &mut id
                        } else {
                            return Err(inner.error("expected `type`, `action` or `id`"));
                        };
                        if slot.is_some() {
                            return Err(inner.error("given twice"));
                        }
                        *slot = Some(inner.value()?.parse::<LitStr>()?);
                        Ok(())
                    })?;
                    let missing = |what| {
                        meta.error(format!(
                            "`resource` needs `{what}`: resource(type = \"…\", action = \"…\", id = \"/pointer\")"
                        ))
                    };
                    let id = id.ok_or_else(|| missing("id"))?;
                    if !id.value().starts_with('/') {
                        return Err(Error::new(
                            id.span(),
                            "`id` is a JSON Pointer into the input, like \"/containerId\"",
                        ));
                    }
                    options.resource = Some(Resource {
                        kind: kind.ok_or_else(|| missing("type"))?,
                        action: action.ok_or_else(|| missing("action"))?,
                        id,
                    });
                }
                "authority" => {
                    let (mut id, mut scopes) = (None, Vec::new());
                    meta.parse_nested_meta(|inner| {
                        if inner.path.is_ident("id") {
                            id = Some(inner.value()?.parse::<LitStr>()?);
                        } else if inner.path.is_ident("scopes") {
                            scopes = string_list(&inner)?;
                        } else {
                            return Err(inner.error("expected `id` or `scopes`"));
                        }
                        Ok(())
                    })?;
                    options.authority = Some(Authority {
                        id: id.ok_or_else(|| meta.error("`authority` needs `id = \"…\"`"))?,
                        scopes,
                    });
                }
                _ => {
                    return Err(meta.error(format!(
                        "unknown option `{}`; expected one of: {KNOWN}",
                        if key.is_empty() { "?".to_owned() } else { key }
                    )));
                }
            }
            Ok(())
        });
        parser.parse2(attr)?;
        Ok(options)
    }
}

/// What the function's arguments are, in order.
enum Arg {
    Context,
    State(Box<Type>),
    Input,
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

fn generic_types(segment: &syn::PathSegment) -> Vec<&Type> {
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `Result<T, E>` → `(T, E)`.
fn result_types(ty: &Type) -> Option<(Type, Type)> {
    let segment = last_segment(ty)?;
    match (segment.ident == "Result", generic_types(segment).as_slice()) {
        (true, [ok, err]) => Some(((*ok).clone(), (*err).clone())),
        _ => None,
    }
}

/// `impl Stream<Item = Result<T, E>> + …` → `(T, E)`.
fn stream_item_types(ty: &Type) -> Option<(Type, Type)> {
    let Type::ImplTrait(bounds) = ty else {
        return None;
    };
    bounds.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let segment = bound.path.segments.last()?;
        if segment.ident != "Stream" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &segment.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Item" => result_types(&assoc.ty),
            _ => None,
        })
    })
}

fn marker_name(function: &Ident) -> Ident {
    let camel: String = function
        .to_string()
        .trim_start_matches("r#")
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    format_ident!("{}Op", camel, span = function.span())
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let attr_span = if attr.is_empty() {
        Span::call_site()
    } else {
        attr.span()
    };
    let options = Options::parse(attr)?;
    let function: ItemFn = syn::parse2(item)?;
    let sig = &function.sig;
    let kind = options.kind.ok_or_else(|| {
        Error::new(
            attr_span,
            "missing the operation kind: write #[operation(query)], #[operation(mutation)] or #[operation(subscription)]",
        )
    })?;
    if let Some(span) = options.resumable
        && !matches!(kind, Kind::Subscription)
    {
        return Err(Error::new(
            span,
            "only a subscription can be resumable: its handler reads `ctx.resume_after()` and goes on from the next item",
        ));
    }
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span,
            "#[operation] needs an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "#[operation] functions cannot be generic: the operation's types must be known",
        ));
    }

    let mut args = Vec::new();
    let mut input_type: Option<Type> = None;
    for arg in &sig.inputs {
        let FnArg::Typed(arg) = arg else {
            return Err(Error::new(
                arg.span(),
                "#[operation] functions are free functions: no `self`",
            ));
        };
        let ty = &*arg.ty;
        match last_segment(ty) {
            Some(segment) if segment.ident == "Context" => args.push(Arg::Context),
            Some(segment) if segment.ident == "State" => match generic_types(segment).as_slice() {
                [state] => args.push(Arg::State(Box::new((*state).clone()))),
                _ => return Err(Error::new(ty.span(), "expected `State<T>`")),
            },
            _ => {
                if input_type.is_some() {
                    return Err(Error::new(
                        ty.span(),
                        "an operation takes one input argument (plus `Context` and `State<T>`); this is a second one",
                    ));
                }
                input_type = Some(ty.clone());
                args.push(Arg::Input);
            }
        }
    }

    let ReturnType::Type(_, return_type) = &sig.output else {
        return Err(Error::new(
            sig.ident.span(),
            match kind {
                Kind::Subscription => {
                    "a subscription must return `impl Stream<Item = Result<Item, Error>>`"
                }
                _ => "a query or mutation must return `Result<Output, Error>`",
            },
        ));
    };
    let (output_type, _handler_error) = match kind {
        Kind::Subscription => stream_item_types(return_type).ok_or_else(|| {
            Error::new(
                return_type.span(),
                "a subscription must return `impl Stream<Item = Result<Item, Error>>`",
            )
        })?,
        _ => result_types(return_type).ok_or_else(|| {
            Error::new(
                return_type.span(),
                "a query or mutation must return `Result<Output, Error>`",
            )
        })?,
    };

    let function_name = &sig.ident;
    let name = match &options.name {
        Some(name) => name.value(),
        None => {
            let crate_name = std::env::var("CARGO_CRATE_NAME").unwrap_or_else(|_| "app".into());
            format!(
                "{crate_name}/{}",
                function_name.to_string().trim_start_matches("r#")
            )
        }
    };
    let description = crate::doc_comment(&function.attrs);
    let marker = marker_name(function_name);
    let vis = &function.vis;
    let input = input_type.unwrap_or_else(|| syn::parse_quote!(::alknet::Empty));
    let errors: Type = options
        .errors
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::alknet::NoDomainError));
    let kind_tokens = match kind {
        Kind::Query => quote!(Query),
        Kind::Mutation => quote!(Mutation),
        Kind::Subscription => quote!(Subscription),
    };

    let mut spec_steps = Vec::new();
    if options.internal {
        spec_steps.push(quote! {
            spec = spec.with_visibility(::alknet::spec::Visibility::Internal);
        });
    }
    let restricted =
        !options.scopes.is_empty() || options.scopes_any.is_some() || options.resource.is_some();
    if restricted {
        let scopes = &options.scopes;
        let scopes_any = match &options.scopes_any {
            Some(any) => quote!(::std::option::Option::Some(vec![#(#any.to_owned()),*])),
            None => quote!(::std::option::Option::None),
        };
        let (resource_type, resource_action) = match &options.resource {
            Some(r) => {
                let (kind, action) = (&r.kind, &r.action);
                (
                    quote!(::std::option::Option::Some(#kind.to_owned())),
                    quote!(::std::option::Option::Some(#action.to_owned())),
                )
            }
            None => (
                quote!(::std::option::Option::None),
                quote!(::std::option::Option::None),
            ),
        };
        spec_steps.push(quote! {
            spec = spec.with_access(::alknet::spec::AccessControl {
                required_scopes: vec![#(#scopes.to_owned()),*],
                required_scopes_any: #scopes_any,
                resource_type: #resource_type,
                resource_action: #resource_action,
            });
        });
    }
    if let Some(resource) = &options.resource {
        let id = &resource.id;
        spec_steps.push(quote!(spec = spec.with_resource_id_path(#id);));
    }
    if options.deprecated {
        spec_steps.push(quote!(spec = spec.deprecated();));
    }
    if options.resumable.is_some() {
        spec_steps.push(quote!(spec = spec.resumable();));
    }

    let mut state_bindings = Vec::new();
    let call_args: Vec<TokenStream> = args
        .iter()
        .enumerate()
        .map(|(i, arg)| match arg {
            Arg::Context => quote!(__ctx.clone()),
            Arg::Input => quote!(__input),
            Arg::State(ty) => {
                let binding = format_ident!("__state{}", i);
                state_bindings.push(quote! {
                    let #binding = ::alknet::State::<#ty>::from_context(&__ctx)?;
                });
                quote!(#binding)
            }
        })
        .collect();
    let uses_input = args.iter().any(|a| matches!(a, Arg::Input));
    let ignore_input = (!uses_input).then(|| quote!(let _ = __input;));
    let handler = match kind {
        Kind::Subscription => quote! {
            ::alknet::typed::__private::subscription_handler::<Self, _, _, _>(
                |__ctx: ::alknet::Context, __input: #input| async move {
                    #ignore_input
                    #(#state_bindings)*
                    ::std::result::Result::Ok(::alknet::typed::__private::into_stream(
                        #function_name(#(#call_args),*).await,
                    ))
                },
            )
        },
        _ => quote! {
            ::alknet::typed::__private::unary_handler::<Self, _, _>(
                |__ctx: ::alknet::Context, __input: #input| async move {
                    #ignore_input
                    #(#state_bindings)*
                    ::alknet::typed::__private::into_result(
                        #function_name(#(#call_args),*).await,
                    )
                },
            )
        },
    };

    let composition = if options.calls.is_some() || options.authority.is_some() {
        let calls = options.calls.clone().unwrap_or_default();
        let authority = match &options.authority {
            Some(Authority { id, scopes }) => quote! {
                ::std::option::Option::Some(::alknet::Identity::new(
                    #id,
                    ::std::vec::Vec::<&'static str>::from([#(#scopes),*]),
                ))
            },
            None => quote!(::std::option::Option::None),
        };
        quote! {
            fn composition() -> ::std::option::Option<::alknet::Composition> {
                ::std::option::Option::Some(::alknet::Composition {
                    authority: #authority,
                    operations: vec![#(#calls.to_owned()),*],
                })
            }
        }
    } else {
        TokenStream::new()
    };

    let doc = format!(
        "The `{name}` operation: generated by `#[operation]` on [`{function_name}`]. \
         Register it with `registry.register::<{marker}>()`, call it with `conn.call::<{marker}>(&input)`."
    );
    Ok(quote! {
        #function

        #[doc = #doc]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #marker;

        impl ::alknet::typed::Operation for #marker {
            const NAME: &'static str = #name;
            const KIND: ::alknet::spec::OpType = ::alknet::spec::OpType::#kind_tokens;
            type Input = #input;
            type Output = #output_type;
            type Error = #errors;

            fn spec() -> ::alknet::spec::OperationSpec {
                let mut spec = ::alknet::spec::OperationSpec::new(Self::NAME, Self::KIND)
                    .expect("#[operation] checked the name")
                    .with_description(#description)
                    .with_input_schema(::alknet::typed::schema_of::<#input>())
                    .with_output_schema(::alknet::typed::schema_of::<#output_type>());
                for error in <Self::Error as ::alknet::typed::DomainError>::declared() {
                    spec = spec.with_error(error);
                }
                #(#spec_steps)*
                spec
            }
        }

        impl ::alknet::typed::ServeOperation for #marker {
            fn handler() -> ::alknet::Handler {
                #handler
            }

            #composition
        }
    })
}
