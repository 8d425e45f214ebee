//! Rebuilds the crate when a migration is added: `embed_migrations!` reads the directory at
//! compile time, and cargo does not notice a new directory on its own.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
