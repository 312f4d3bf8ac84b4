//! `cargo ci`: leaklab's project tasks. (Stub: see issue 6.)

fn main() {
    eprintln!("cargo ci: not built yet");
    std::process::exit(1);
}
