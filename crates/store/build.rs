//! Rebuilds the crate when a migration is added or removed: `embed_migrations!` tracks
//! the files it embedded, not new directories next to them, so without this a build
//! after adding a migration silently embeds the old list.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
}
