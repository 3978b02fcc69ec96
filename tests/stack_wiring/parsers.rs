//! The parsers of every module on known input, so a check cannot pass because a parser saw
//! nothing. Each module keeps its cases beside its parsers; this runs them as one test.

use crate::{compose, dockerfile, package, paths, query_syntax, stack};

#[test]
fn parsers_read_what_they_are_given() {
    compose::read_known_input();
    query_syntax::read_known_input();
    dockerfile::read_known_input();
    stack::read_known_input();
    package::read_known_input();
    paths::read_known_input();
}
