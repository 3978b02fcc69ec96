//! README's "Use it in your service" block is the library's example service, line for line, so
//! what a reader copies is what CI builds and runs (`crates/tracing-span-profiles/tests`).

#[test]
fn use_it_in_your_service_is_the_library_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../crates/tracing-span-profiles/examples/axum_service.rs");
    let block = readme
        .split("## Use it in your service")
        .nth(1)
        .and_then(|s| s.split("```rust\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a rust block under 'Use it in your service'");
    let code = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("// ..."));
    let mut rest = example;
    let mut lines = 0;
    for line in code {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("README line not in the example, in this order: {line}"));
        rest = &rest[at + line.len()..];
        lines += 1;
    }
    assert!(
        lines >= 5,
        "the block shows the setup, not a fragment of it"
    );
}
