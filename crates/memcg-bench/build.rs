//! Records, for the report's header, the compiler's version and whether
//! snmalloc was built without its debug assertions.

use std::env;
use std::process::Command;

fn main() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MEMCG_BENCH_RUSTC={version}");

    // snmalloc-sys builds snmalloc with the `cc` crate, which never defines
    // NDEBUG, and defines it itself only for MSVC: unless the C++ flags carry
    // it, snmalloc runs with its debug assertions (about 2x slower on
    // single64). `cc` reads these variables, in this order of precedence.
    let target = env::var("TARGET").unwrap_or_default();
    let names = [
        format!("CXXFLAGS_{target}"),
        format!("CXXFLAGS_{}", target.replace('-', "_")),
        "TARGET_CXXFLAGS".to_owned(),
        "CXXFLAGS".to_owned(),
    ];
    let mut ndebug = false;
    for name in &names {
        println!("cargo:rerun-if-env-changed={name}");
        if let Ok(flags) = env::var(name) {
            ndebug |= flags.split_whitespace().any(|f| f == "-DNDEBUG");
        }
    }
    println!("cargo:rustc-env=MEMCG_BENCH_SNMALLOC_NDEBUG={ndebug}");
    println!("cargo:rerun-if-changed=build.rs");
}
