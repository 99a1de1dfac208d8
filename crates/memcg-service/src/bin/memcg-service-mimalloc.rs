//! The same service with mimalloc as the global allocator, the baseline of
//! the load run: groups and limits exist, but nothing is charged.

#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    memcg_service::server_main("mimalloc")
}
