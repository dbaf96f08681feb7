//! Compile-time behaviour of `#[operation]` and `#[derive(DomainError)]`: one passing and one
//! failing case per rule, with the compiler's messages checked against `.stderr` files
//! (`TRYBUILD=overwrite cargo test -p alknet-macros --test macro_ui` regenerates them after a deliberate change).

#[test]
fn operation_macro_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
