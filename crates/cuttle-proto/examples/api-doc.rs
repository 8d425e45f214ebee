//! Prints the API reference generated from the protos: `cargo run -p cuttle-proto
//! --example api-doc > docs/api.md`.

fn main() {
    print!("{}", cuttle_proto::apidoc::render());
}
