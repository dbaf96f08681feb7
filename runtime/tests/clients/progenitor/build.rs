//! Generates the client from the OpenAPI 3.0.3 document named by `ALKNET_OPENAPI_DOCUMENT`
//! (the demo node's /openapi-3.0.json, fetched by the test), as progenitor's README does.

fn main() {
    println!("cargo:rerun-if-env-changed=ALKNET_OPENAPI_DOCUMENT");
    let path = std::env::var("ALKNET_OPENAPI_DOCUMENT")
        .expect("ALKNET_OPENAPI_DOCUMENT names the OpenAPI 3.0.3 document");
    println!("cargo:rerun-if-changed={path}");
    let file = std::fs::File::open(&path).expect("the document is readable");
    let spec: openapiv3::OpenAPI = serde_json::from_reader(file).expect("an OpenAPI 3.0 document");
    let mut generator = progenitor::Generator::default();
    let tokens = generator
        .generate_tokens(&spec)
        .expect("progenitor generates a client");
    let ast = syn::parse2(tokens).expect("the client parses");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("client.rs");
    std::fs::write(out, prettyplease::unparse(&ast)).unwrap();
}
