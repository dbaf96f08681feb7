//! Generates the types of `shapes.json`, as a user's build script would.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    alknet_codegen::Builder::new()
        .service("shapes.json")
        .generate()?;
    Ok(())
}
