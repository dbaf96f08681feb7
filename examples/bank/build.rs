//! Generates the typed server and client of `schemas/bank.json` at build time. The demo node's
//! bundle is generated too, so every generated file is compiled by this example.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alknet_codegen::Builder::new()
        .service("../../schemas/bank.json")
        .service("../../runtime/tests/golden/demo-spec-bundle.json")
        .generate()?;
    Ok(())
}
