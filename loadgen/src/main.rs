//! `loadgen`: drives distinct-key load at a fixed arrival rate against a leaklab
//! service, samples its memory and judges whether it leaks. (Stub: see issue 4.)

fn main() {
    eprintln!("loadgen: not built yet");
    std::process::exit(1);
}
