//! The `memcg replay` parser on arbitrary bytes (DESIGN.md §8): it never
//! panics; what it accepts prints back (statement text) to a line that
//! parses to the same command; its SIZE parser agrees with the engine's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memcg_cli::script::{parse, parse_bytes, parse_size};

fuzz_target!(|data: &[u8]| {
    if let Ok(script) = parse_bytes("fuzz.mcg", data) {
        for statement in &script.statements {
            let again = parse("fuzz.mcg", &statement.text)
                .unwrap_or_else(|e| panic!("{:?} does not parse again: {e}", statement.text));
            assert_eq!(again.statements.len(), 1, "{:?}", statement.text);
            assert_eq!(again.statements[0].command, statement.command);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // One SIZE grammar for scripts and interface files (DESIGN.md §4).
        assert_eq!(parse_size(text).ok(), memcg::parse_size(text), "{text:?}");
    }
});
