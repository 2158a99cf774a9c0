//! `sqlx::migrate!` embeds `migrations/` at build time; a changed or added migration must
//! rebuild the crate, which a stable proc macro cannot ask for on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
