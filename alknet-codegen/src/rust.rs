//! Rust generation (design §9, schema-first).
//!
//! From a service's bundle: the types (typify), a marker type per operation for typed calls
//! (`conn.call::<DepositOp>(&input)`), an error enum per operation with declared errors, a
//! server trait with one async method per operation plus `register` to serve an implementation,
//! and a typed client with one method per external operation. Formatted by prettyplease;
//! the same input always gives the same bytes.
//!
//! The generated code needs only `alknet` as a dependency: serde and serde_json are reached
//! through its re-exports (`::alknet::serde`, `::alknet::serde_json`). Every generated item
//! allows `dead_code`: a program uses the client or the server side, rarely every method.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use alknet_spec::{OpType, OperationSpec, Visibility};
use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use serde_json::Value;
use typify::{TypeId, TypeSpace, TypeSpaceSettings};

use crate::convert::{self, Formats};
use crate::normalise::{Warning, normalise_avoiding, strip_defaults};
use crate::{CodegenError, Service};
use alknet_spec::keywords::escape;

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

fn ident(text: &str) -> Ident {
    if KEYWORDS.contains(&text) {
        format_ident!("{}_", text)
    } else {
        Ident::new(text, Span::call_site())
    }
}

/// Runs typify, turning its errors and panics into a message: typify panics on some schemas it
/// does not support, and a build script must get an error, not an abort.
fn guarded<T>(run: impl FnOnce() -> Result<T, typify::Error>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(AssertUnwindSafe(run));
    std::panic::set_hook(hook);
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(one_sentence(&error.to_string())),
        Err(payload) => Err(payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .map(|s| format!("typify cannot handle this schema ({})", one_sentence(&s)))
            .unwrap_or_else(|| "typify cannot handle this schema".into())),
    }
}

/// The first line of a typify message, without the schema dump it often ends with.
fn one_sentence(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    let line = line
        .split_once(": {")
        .or_else(|| line.split_once(" Schema"))
        .map_or(line, |(head, _)| head)
        .trim_end_matches([':', ' ']);
    if line.chars().count() > 240 {
        format!("{}…", line.chars().take(240).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// Which definition typify fails on: the fewest leading definitions that, replaced by "any
/// value", let the rest through; the last of them is the culprit (binary search, so a large
/// service costs a few typify runs, and only when generation already failed).
fn failing_definition(
    settings: &TypeSpaceSettings,
    defs: &[(String, schemars08::schema::Schema)],
) -> Option<usize> {
    let passes = |replaced: usize| {
        let mut space = TypeSpace::new(settings);
        let trial: Vec<_> = defs
            .iter()
            .enumerate()
            .map(|(i, (name, schema))| {
                if i < replaced {
                    (name.clone(), schemars08::schema::Schema::Bool(true))
                } else {
                    (name.clone(), schema.clone())
                }
            })
            .collect();
        guarded(|| space.add_ref_types(trial)).is_ok()
    };
    if !passes(defs.len()) {
        return None;
    }
    let (mut low, mut high) = (0, defs.len());
    while low < high {
        let middle = (low + high) / 2;
        if passes(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low.checked_sub(1)
}

struct Generator<'a> {
    path: &'a Path,
    space: TypeSpace,
    formats: Formats,
}

impl Generator<'_> {
    fn error(&self, pointer: String, message: String) -> CodegenError {
        CodegenError::Service {
            path: self.path.to_owned(),
            pointer,
            line: None,
            message,
        }
    }

    /// The Rust type of one schema of an operation, registering what it needs.
    fn type_of(
        &mut self,
        schema: &Value,
        pointer: &str,
        hint: String,
    ) -> Result<TokenStream, CodegenError> {
        let mut schema = schema.clone();
        if let Value::Object(map) = &mut schema {
            map.remove("$defs");
        }
        let converted = convert::to_schemars(&schema, pointer, self.formats)
            .map_err(|u| self.error(u.pointer, u.message))?;
        let space = &mut self.space;
        let id: TypeId = guarded(|| space.add_type_with_name(&converted, Some(hint)))
            .map_err(|message| self.error(pointer.to_owned(), message))?;
        let ty = self
            .space
            .get_type(&id)
            .map_err(|e| self.error(pointer.to_owned(), e.to_string()))?;
        Ok(ty.ident())
    }
}

/// One operation's schemas after normalisation ([`crate::normalise`]), `$defs` included.
struct Schemas {
    input: Value,
    output: Value,
    errors: Vec<Option<Value>>,
}

/// Normalises every schema of the bundle, collecting the warnings.
fn normalised(service: &Service, warnings: &mut Vec<Warning>, avoid: &[String]) -> Vec<Schemas> {
    service
        .bundle
        .operations
        .iter()
        .enumerate()
        .map(|(i, op)| Schemas {
            input: normalise_avoiding(
                &op.input_schema,
                &format!("/operations/{i}/input_schema"),
                warnings,
                avoid,
            ),
            output: normalise_avoiding(
                &op.output_schema,
                &format!("/operations/{i}/output_schema"),
                warnings,
                avoid,
            ),
            errors: op
                .error_schemas
                .iter()
                .enumerate()
                .map(|(j, e)| {
                    e.schema.as_ref().map(|schema| {
                        normalise_avoiding(
                            schema,
                            &format!("/operations/{i}/error_schemas/{j}/schema"),
                            warnings,
                            avoid,
                        )
                    })
                })
                .collect(),
        })
        .collect()
}

/// Every `$defs` entry of every schema in the bundle, once. The same name with different
/// content is an error (the generated types share one namespace).
fn shared_definitions(
    schemas: &[Schemas],
    path: &Path,
) -> Result<BTreeMap<String, (Value, String)>, CodegenError> {
    let mut defs: BTreeMap<String, (Value, String)> = BTreeMap::new();
    for (i, op) in schemas.iter().enumerate() {
        let mut all = vec![
            ("input_schema".to_owned(), &op.input),
            ("output_schema".to_owned(), &op.output),
        ];
        for (j, error) in op.errors.iter().enumerate() {
            if let Some(schema) = error {
                all.push((format!("error_schemas/{j}/schema"), schema));
            }
        }
        for (field, schema) in all {
            let Some(Value::Object(local)) = schema.get("$defs") else {
                continue;
            };
            for (name, def) in local {
                let pointer = format!("/operations/{i}/{field}/$defs/{}", escape(name));
                match defs.get(name) {
                    Some((existing, first)) if existing != def => {
                        return Err(CodegenError::Service {
                            path: path.to_owned(),
                            pointer,
                            line: None,
                            message: format!(
                                "conflicts with the definition of `{name}` at {first}"
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        defs.insert(name.clone(), (def.clone(), pointer));
                    }
                }
            }
        }
    }
    Ok(defs)
}

struct OpCode {
    marker: Ident,
    error: TokenStream,
    method: Ident,
    input: TokenStream,
    output: TokenStream,
    spec: OperationSpec,
}

/// Rewrites the absolute paths typify writes to the crates alknet re-exports (`::serde::…`,
/// `::serde_json::…`) into paths through `::alknet`.
fn through_alknet(tokens: TokenStream) -> TokenStream {
    use proc_macro2::{Group, Punct, Spacing, TokenTree};
    let mut out: Vec<TokenTree> = Vec::new();
    for tree in tokens {
        match tree {
            TokenTree::Group(group) => {
                let mut inner = Group::new(group.delimiter(), through_alknet(group.stream()));
                inner.set_span(group.span());
                let derives_serde = group.delimiter() == proc_macro2::Delimiter::Bracket
                    && matches!(out.last(), Some(TokenTree::Punct(p)) if p.as_char() == '#')
                    && {
                        let text = group.stream().to_string();
                        text.starts_with("derive")
                            && (text.contains("Serialize") || text.contains("Deserialize"))
                    };
                out.push(TokenTree::Group(inner));
                if derives_serde {
                    // serde's derives find serde through the re-export (after the derive that
                    // introduces the attribute).
                    out.extend(quote!(#[serde(crate = "::alknet::serde")]));
                }
            }
            TokenTree::Ident(ident)
                if (ident == "serde" || ident == "serde_json")
                    && matches!(
                        &out[..],
                        [.., TokenTree::Punct(a), TokenTree::Punct(b)]
                            if a.as_char() == ':' && b.as_char() == ':'
                                && a.spacing() == Spacing::Joint
                    )
                    // `::serde` at the start of a path, not `x::serde` (a keyword before
                    // the `::`, as in `<E as ::serde::de::Error>`, still starts a path).
                    && !matches!(
                        out.len().checked_sub(3).map(|i| &out[i]),
                        Some(TokenTree::Ident(previous))
                            if !KEYWORDS.contains(&previous.to_string().as_str())
                    ) =>
            {
                out.push(TokenTree::Ident(Ident::new("alknet", ident.span())));
                out.push(TokenTree::Punct(Punct::new(':', Spacing::Joint)));
                out.push(TokenTree::Punct(Punct::new(':', Spacing::Alone)));
                out.push(TokenTree::Ident(ident));
            }
            // Paths inside attribute strings (`skip_serializing_if = "::serde_json::Map::is_empty"`).
            TokenTree::Literal(literal) if literal.to_string().starts_with("\"::serde") => {
                let text = literal.to_string();
                let path = text.trim_matches('"');
                let mut rewritten = proc_macro2::Literal::string(&format!("::alknet{path}"));
                rewritten.set_span(literal.span());
                out.push(TokenTree::Literal(rewritten));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// Generates the Rust source for `service`, and the approximations it made. `path` names the
/// input in errors; `formats` says what string formats become.
pub fn generate(
    service: &Service,
    path: &Path,
    formats: Formats,
) -> Result<(String, Vec<Warning>), CodegenError> {
    // When typify names one of its own types like a definition, the definition is renamed and
    // the service generated again (a few times at most).
    let mut avoid = Vec::new();
    loop {
        match generate_avoiding(service, path, formats, &avoid) {
            Err(Clash::Name(name)) if avoid.len() < 8 && !avoid.contains(&name) => avoid.push(name),
            Err(Clash::Name(name)) => {
                return Err(CodegenError::Service {
                    path: path.to_owned(),
                    pointer: "/$defs".into(),
                    line: None,
                    message: format!("typify gave two generated types the name `{name}`"),
                });
            }
            Err(Clash::Error(error)) => return Err(error),
            Ok(generated) => return Ok(generated),
        }
    }
}

/// Why one attempt at generating failed.
enum Clash {
    /// typify gave two types this name.
    Name(String),
    /// Anything else.
    Error(CodegenError),
}

impl From<CodegenError> for Clash {
    fn from(error: CodegenError) -> Self {
        Clash::Error(error)
    }
}

fn generate_avoiding(
    service: &Service,
    path: &Path,
    formats: Formats,
    avoid: &[String],
) -> Result<(String, Vec<Warning>), Clash> {
    let mut settings = TypeSpaceSettings::default();
    settings
        .with_type_mod("types")
        .with_struct_builder(false)
        .with_derive("PartialEq".to_owned());
    let mut generator = Generator {
        path,
        space: TypeSpace::new(&settings),
        formats,
    };
    let mut warnings = Vec::new();
    let schemas = normalised(service, &mut warnings, avoid);
    warnings.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    warnings.dedup();
    let mut defs = shared_definitions(&schemas, path)?;
    // typify checks each `default` against its type, more deeply than the normaliser can; a
    // definition it refuses for a default loses its defaults (each one a warning) and is tried
    // again, a bounded number of times.
    let mut repairs = 0;
    loop {
        let mut converted = Vec::new();
        for (name, (schema, pointer)) in &defs {
            let schema = convert::to_schemars(schema, pointer, generator.formats)
                .map_err(|u| generator.error(u.pointer, u.message))?;
            converted.push((name.clone(), schema));
        }
        let mut space = TypeSpace::new(&settings);
        let Err(message) = guarded(|| space.add_ref_types(converted.clone())) else {
            generator.space = space;
            break;
        };
        let culprit = failing_definition(&settings, &converted).map(|i| converted[i].0.clone());
        if let Some(name) = &culprit
            && message.contains("does not conform")
            && repairs < 32
            && let Some((def, pointer)) = defs.get_mut(name)
            && strip_defaults(def, pointer, &mut warnings) > 0
        {
            repairs += 1;
            continue;
        }
        let pointer = culprit
            .and_then(|name| defs.get(&name).map(|(_, pointer)| pointer.clone()))
            .unwrap_or_else(|| "/$defs".into());
        return Err(generator.error(pointer, message).into());
    }
    warnings.sort_by(|a, b| a.pointer.cmp(&b.pointer));

    let mut ops = Vec::new();
    let mut items = Vec::new();
    for (i, spec) in service.bundle.operations.iter().enumerate() {
        let relative = spec
            .name
            .strip_prefix(&format!("{}/", service.name))
            .unwrap_or(&spec.name);
        let camel = relative.replace('/', "_").to_upper_camel_case();
        let snake = relative.replace('/', "_").to_snake_case();
        let pointer = format!("/operations/{i}");
        let item_or_output = if spec.op_type == OpType::Subscription {
            "Item"
        } else {
            "Output"
        };
        let input = generator.type_of(
            &schemas[i].input,
            &format!("{pointer}/input_schema"),
            format!("{camel}Input"),
        )?;
        let output = generator.type_of(
            &schemas[i].output,
            &format!("{pointer}/output_schema"),
            format!("{camel}{item_or_output}"),
        )?;
        let marker = format_ident!("{}Op", camel);
        let error = if spec.error_schemas.is_empty() {
            quote!(::alknet::NoDomainError)
        } else {
            let error_ident = format_ident!("{}Error", camel);
            items.push(error_enum(
                &mut generator,
                spec,
                &schemas[i].errors,
                &error_ident,
                &marker,
                &camel,
                &pointer,
            )?);
            quote!(#error_ident)
        };
        ops.push(OpCode {
            marker,
            error,
            method: ident(&snake),
            input,
            output,
            spec: spec.clone(),
        });
    }

    let markers = ops.iter().map(marker_type);
    let service_trait = service_trait(service, &ops);
    let register = register_fn(service, &ops);
    let client = client(service, &ops);
    let types = generator.space.to_stream();
    // The generated code depends on `alknet` alone, unless typed formats were asked for (then
    // on chrono and uuid, and the caller is told): a type that would need another crate is a
    // conversion this generator missed, reported rather than shipped as code that fails to
    // build.
    let space = &generator.space;
    let mut needs = Vec::new();
    for (needed, crate_name, allowed) in [
        (space.uses_regress(), "regress", false),
        (space.uses_chrono(), "chrono", formats == Formats::Typed),
        (space.uses_uuid(), "uuid", formats == Formats::Typed),
    ] {
        if !needed {
            continue;
        }
        if !allowed {
            return Err(generator
                .error(
                    "/$defs".into(),
                    format!(
                        "the generated types would need the `{crate_name}` crate, which generated code does not depend on (a bug in alknet-codegen's schema conversion: please report the schema)"
                    ),
                )
                .into());
        }
        needs.push(format!("`{crate_name}` (with its `serde` feature)"));
    }
    if !needs.is_empty() {
        warnings.push(Warning {
            pointer: String::new(),
            message: format!(
                "typed formats: the generated types use {}; the crate that includes them must depend on each",
                needs.join(" and ")
            ),
        });
    }
    let tokens = quote! {
        /// The types of the service's schemas, generated by typify.
        #[allow(clippy::all, missing_docs, dead_code, unused_imports, irrefutable_let_patterns)]
        pub mod types {
            #types
        }

        #(#markers)*
        #(#items)*
        #service_trait
        #register
        #client
    };
    let file: syn::File =
        syn::parse2(through_alknet(tokens)).map_err(|e| CodegenError::Output {
            path: path.to_owned(),
            message: format!("generated code does not parse (a bug in alknet-codegen): {e}"),
        })?;
    // typify can give two types one name (a definition and a type it names after a property):
    // the caller renames the definition and tries again.
    if let Some(name) = duplicate_type_name(&file) {
        return Err(Clash::Name(name));
    }
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok((
        format!(
            "// @generated by alknet-codegen from `{source}`. Do not edit: change the service file.\n\n{}",
            prettyplease::unparse(&file)
        ),
        warnings,
    ))
}

/// A type name defined twice in the generated `types` module, if any.
fn duplicate_type_name(file: &syn::File) -> Option<String> {
    let types = file.items.iter().find_map(|item| match item {
        syn::Item::Mod(module) if module.ident == "types" => module.content.as_ref(),
        _ => None,
    })?;
    let mut seen = std::collections::BTreeSet::new();
    types.1.iter().find_map(|item| {
        let ident = match item {
            syn::Item::Struct(item) => &item.ident,
            syn::Item::Enum(item) => &item.ident,
            syn::Item::Type(item) => &item.ident,
            _ => return None,
        };
        (!seen.insert(ident.to_string())).then(|| ident.to_string())
    })
}

fn doc(text: &str) -> TokenStream {
    let lines = text.lines().map(|line| format!(" {line}"));
    quote!(#(#[doc = #lines])*)
}

fn marker_type(op: &OpCode) -> TokenStream {
    let OpCode {
        marker,
        error,
        input,
        output,
        spec,
        ..
    } = op;
    let name = &spec.name;
    let kind = match spec.op_type {
        OpType::Query => quote!(Query),
        OpType::Mutation => quote!(Mutation),
        OpType::Subscription => quote!(Subscription),
    };
    let spec_json = serde_json::to_string(spec).expect("specs serialize");
    let text = doc(&format!(
        "`{name}`: {}\n\nThe marker for typed calls: `conn.call::<{marker}>(&input)`.",
        spec.description
    ));
    quote! {
        #text
        #[allow(dead_code)]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct #marker;

        impl ::alknet::Operation for #marker {
            const NAME: &'static str = #name;
            const KIND: ::alknet::spec::OpType = ::alknet::spec::OpType::#kind;
            type Input = #input;
            type Output = #output;
            type Error = #error;

            fn spec() -> ::alknet::spec::OperationSpec {
                ::alknet::typed::__private::serde_json::from_str(#spec_json)
                    .expect("alknet-codegen embedded a valid spec")
            }
        }
    }
}

fn error_enum(
    generator: &mut Generator<'_>,
    spec: &OperationSpec,
    details: &[Option<Value>],
    name: &Ident,
    marker: &Ident,
    camel: &str,
    pointer: &str,
) -> Result<TokenStream, CodegenError> {
    let mut variants = Vec::new();
    for (j, error) in spec.error_schemas.iter().enumerate() {
        let variant = format_ident!("{}", error.code.to_upper_camel_case());
        let code = &error.code;
        let message = if error.description.is_empty() {
            error.code.clone()
        } else {
            error.description.clone()
        };
        let text = doc(&format!(
            "`{code}`{}: {}",
            error
                .http_status
                .map(|s| format!(" (HTTP {s})"))
                .unwrap_or_default(),
            message
        ));
        let attribute = quote!(#[domain(code = #code, message = #message)]);
        match &details[j] {
            Some(schema) => {
                let details = generator.type_of(
                    schema,
                    &format!("{pointer}/error_schemas/{j}/schema"),
                    format!("{camel}{variant}Details"),
                )?;
                variants.push(quote!(#text #attribute #variant(#details)));
            }
            None => variants.push(quote!(#text #attribute #variant)),
        }
    }
    let text = doc(&format!("The declared errors of `{}`.", spec.name));
    // The mapping to and from `call.error` is `#[derive(DomainError)]`'s: one template for
    // code-first and schema-first errors. The declared list is the spec's own, so the service
    // file's schemas and statuses are what discovery and OpenAPI show.
    Ok(quote! {
        #text
        #[allow(dead_code)]
        #[derive(Debug, Clone, PartialEq, ::alknet::DomainError)]
        #[domain(declared_by = #marker)]
        pub enum #name {
            #(#variants,)*
        }
    })
}

fn trait_name(service: &Service) -> Ident {
    format_ident!("{}Service", service.name.to_upper_camel_case())
}

fn service_trait(service: &Service, ops: &[OpCode]) -> TokenStream {
    let name = trait_name(service);
    let methods = ops.iter().map(|op| {
        let OpCode { method, input, output, error, spec, .. } = op;
        let text = doc(&format!("`{}`{}: {}", spec.name, if spec.visibility == Visibility::Internal { " (internal)" } else { "" }, spec.description));
        let answer = match spec.op_type {
            OpType::Subscription => quote!(::alknet::typed::ItemStream<#output, #error>),
            _ => quote!(#output),
        };
        quote! {
            #text
            fn #method(
                &self,
                ctx: ::alknet::Context,
                input: #input,
            ) -> impl ::std::future::Future<Output = ::std::result::Result<#answer, ::alknet::OpError<#error>>> + ::std::marker::Send;
        }
    });
    let text = doc(&format!(
        "The `{}` service: implement one method per operation, then serve it with [`register`].\n\n{}",
        service.name, service.description
    ));
    quote! {
        #text
        #[allow(dead_code)]
        pub trait #name: ::std::marker::Send + ::std::marker::Sync + 'static {
            #(#methods)*
        }
    }
}

fn register_fn(service: &Service, ops: &[OpCode]) -> TokenStream {
    let name = trait_name(service);
    let registrations = ops.iter().map(|op| {
        let OpCode { method, input, marker, spec, .. } = op;
        let handler = match spec.op_type {
            OpType::Subscription => quote! {
                ::alknet::Handler::typed_subscription(move |ctx: ::alknet::Context, input: #input| {
                    let service = ::std::sync::Arc::clone(&service);
                    async move {
                        let items = service.#method(ctx, input).await.map_err(|e| e.to_call_error())?;
                        ::std::result::Result::Ok(::alknet::typed::__private::op_error_stream(items))
                    }
                })
            },
            _ => quote! {
                ::alknet::Handler::typed_unary(move |ctx: ::alknet::Context, input: #input| {
                    let service = ::std::sync::Arc::clone(&service);
                    async move { service.#method(ctx, input).await.map_err(|e| e.to_call_error()) }
                })
            },
        };
        quote! {
            {
                let service = ::std::sync::Arc::clone(&service);
                registry.register_handler(<#marker as ::alknet::Operation>::spec(), #handler)?;
            }
        }
    });
    quote! {
        /// Registers every operation of the service, served by `service`.
        #[allow(dead_code)]
        pub fn register<S: #name>(
            registry: &mut ::alknet::Registry,
            service: ::std::sync::Arc<S>,
        ) -> ::std::result::Result<(), ::alknet::RegistryError> {
            #(#registrations)*
            let _ = service;
            ::std::result::Result::Ok(())
        }
    }
}

fn client(service: &Service, ops: &[OpCode]) -> TokenStream {
    let name = format_ident!("{}Client", service.name.to_upper_camel_case());
    let methods = ops
        .iter()
        .filter(|op| op.spec.visibility == Visibility::External)
        .map(|op| {
            let OpCode { method, input, output, error, marker, spec } = op;
            let text = doc(&format!("`{}`: {}", spec.name, spec.description));
            match spec.op_type {
                OpType::Subscription => quote! {
                    #text
                    pub async fn #method(
                        &self,
                        input: &#input,
                    ) -> ::std::result::Result<::alknet::TypedSubscription<#marker>, ::alknet::OpError<#error>> {
                        self.conn.subscribe::<#marker>(input).await
                    }
                },
                _ => quote! {
                    #text
                    pub async fn #method(
                        &self,
                        input: &#input,
                    ) -> ::std::result::Result<#output, ::alknet::OpError<#error>> {
                        self.conn.call::<#marker>(input).await
                    }
                },
            }
        });
    let text = doc(&format!(
        "A typed client of the `{}` service over an alknet connection.",
        service.name
    ));
    quote! {
        #text
        #[allow(dead_code)]
        #[derive(Clone)]
        pub struct #name {
            conn: ::alknet::Connection,
        }

        #[allow(dead_code)]
        impl #name {
            /// A client calling over `conn`.
            pub fn new(conn: ::alknet::Connection) -> Self {
                Self { conn }
            }

            /// The connection underneath.
            pub fn connection(&self) -> &::alknet::Connection {
                &self.conn
            }

            #(#methods)*
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    #[test]
    fn serde_paths_go_through_alknet() {
        let tokens = quote! {
            #[derive(::serde::Deserialize, Debug)]
            pub struct A { v: ::serde_json::Value }
            fn f<D: X>(e: E) -> D::Error { <D::Error as ::serde::de::Error>::custom(e) }
            const S: () = ::alknet::typed::__private::serde_json::from_str("");
        };
        let out = super::through_alknet(tokens).to_string();
        assert!(out.contains(":: alknet :: serde :: Deserialize"), "{out}");
        assert!(
            out.contains("# [serde (crate = \"::alknet::serde\")]"),
            "{out}"
        );
        assert!(
            out.contains("v : :: alknet :: serde_json :: Value"),
            "{out}"
        );
        assert!(
            out.contains("as :: alknet :: serde :: de :: Error"),
            "{out}"
        );
        assert!(out.contains("__private :: serde_json :: from_str"), "{out}");
    }
}
