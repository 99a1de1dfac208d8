//! `memcg`: the command-line front end (in progress: the script parser).

#[allow(dead_code)] // The executor that uses it comes with the library API.
mod script;

fn main() {}
