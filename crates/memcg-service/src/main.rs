//! The service with memcg as the global allocator: every tenant's requests
//! are charged to its group.

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

fn main() -> std::process::ExitCode {
    memcg_service::server_main("MemcgAlloc")
}
