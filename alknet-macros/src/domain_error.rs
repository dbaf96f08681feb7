//! `#[derive(DomainError)]`: declared domain errors as an enum.

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, LitInt, LitStr};

struct Variant {
    ident: syn::Ident,
    code: LitStr,
    status: Option<u16>,
    description: String,
    message: String,
    details: Option<syn::Type>,
}

pub(crate) fn expand(item: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(item)?;
    let Data::Enum(data) = &input.data else {
        return Err(Error::new(
            input.ident.span(),
            "DomainError can only be derived for an enum, one variant per error code",
        ));
    };
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "DomainError enums cannot be generic",
        ));
    }
    // `#[domain(declared_by = SomeOp)]` on the enum: the declared errors are those the
    // operation's spec holds (generated code, whose schemas come from a service file), instead
    // of being derived from the variants.
    let mut declared_by = None::<syn::Type>;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("domain")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("declared_by") {
                declared_by = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `declared_by = OperationType` on the enum"))
            }
        })?;
    }
    let mut variants = Vec::new();
    let mut codes = HashMap::new();
    for variant in &data.variants {
        let (mut code, mut status, mut message) = (None::<LitStr>, None::<u16>, None::<LitStr>);
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("domain")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("code") {
                    let lit: LitStr = meta.value()?.parse()?;
                    alknet_spec::check_error_code(&lit.value()).map_err(|problem| {
                        Error::new(
                            lit.span(),
                            format!("error code `{}` {problem}", lit.value()),
                        )
                    })?;
                    code = Some(lit);
                } else if meta.path.is_ident("status") {
                    let lit: LitInt = meta.value()?.parse()?;
                    let value: u16 = lit.base10_parse()?;
                    if !(400..=599).contains(&value) {
                        return Err(Error::new(
                            lit.span(),
                            "the HTTP status must be in 400..=599",
                        ));
                    }
                    status = Some(value);
                } else if meta.path.is_ident("message") {
                    message = Some(meta.value()?.parse()?);
                } else {
                    return Err(meta.error("expected `code`, `status` or `message`"));
                }
                Ok(())
            })?;
        }
        let code = code.ok_or_else(|| {
            Error::new(
                variant.ident.span(),
                "every variant needs #[domain(code = \"UPPER_SNAKE_CODE\")]",
            )
        })?;
        if let Some(first) = codes.insert(code.value(), variant.ident.to_string()) {
            return Err(Error::new(
                code.span(),
                format!("code `{}` is already used by `{first}`", code.value()),
            ));
        }
        let details = match &variant.fields {
            Fields::Unit => None,
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                Some(fields.unnamed[0].ty.clone())
            }
            other => {
                return Err(Error::new(
                    other.span(),
                    "a DomainError variant is a unit variant or carries one details type: `Variant(Details)`",
                ));
            }
        };
        let description = crate::doc_comment(&variant.attrs);
        let message = message.map(|m| m.value()).unwrap_or_else(|| {
            description
                .lines()
                .next()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| code.value())
        });
        variants.push(Variant {
            ident: variant.ident.clone(),
            code,
            status,
            description,
            message,
            details,
        });
    }

    let name = &input.ident;
    let declared_list = variants.iter().map(|v| {
        let (code, description) = (&v.code, &v.description);
        let status = v
            .status
            .map(|s| quote!(let error = error.with_http_status(#s);));
        let schema = v
            .details
            .as_ref()
            .map(|ty| quote!(let error = error.with_schema(::alknet::typed::schema_of::<#ty>());));
        quote! {{
            let error = ::alknet::spec::ErrorSpec::new(#code, #description);
            #status
            #schema
            error
        }}
    });
    let to_call = variants.iter().map(|v| {
        let (ident, code, message) = (&v.ident, &v.code, &v.message);
        match &v.details {
            Some(_) => quote! {
                #name::#ident(details) => ::alknet::CallError::domain(#code, #message)
                    .with_details(::alknet::typed::__private::details(details)),
            },
            None => quote! {
                #name::#ident => ::alknet::CallError::domain(#code, #message),
            },
        }
    });
    let from_call = variants.iter().map(|v| {
        let (ident, code) = (&v.ident, &v.code);
        match &v.details {
            Some(_) => quote! {
                #code => ::alknet::typed::__private::parse_details(&error.details).map(#name::#ident),
            },
            None => quote! { #code => ::std::option::Option::Some(#name::#ident), },
        }
    });
    let declared = match declared_by {
        Some(op) => quote!(<#op as ::alknet::typed::Operation>::spec().error_schemas),
        None => quote!(vec![#(#declared_list),*]),
    };
    // `IntoCallError` and `From<Self> for OpError<Self>` come from blanket impls over
    // `DomainError` in the runtime.
    Ok(quote! {
        impl ::alknet::typed::DomainError for #name {
            fn declared() -> ::std::vec::Vec<::alknet::spec::ErrorSpec> {
                #declared
            }

            fn to_call_error(&self) -> ::alknet::CallError {
                match self {
                    #(#to_call)*
                }
            }

            fn from_call_error(error: &::alknet::CallError) -> ::std::option::Option<Self> {
                match error.code.as_str() {
                    #(#from_call)*
                    _ => ::std::option::Option::None,
                }
            }
        }
    })
}
