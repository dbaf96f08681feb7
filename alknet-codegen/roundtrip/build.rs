//! Generates the types of `shapes.json`, and of `formats.json` with typed formats, as a
//! user's build script would.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alknet_codegen::Builder::new()
        .service("shapes.json")
        .generate()?;
    alknet_codegen::Builder::new()
        .service("formats.json")
        .typed_formats()
        .generate()?;
    Ok(())
}
