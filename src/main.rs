fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Minimal wiring for `minisv ctl ...` (the lead's dispatcher replaces this).
    if args.first().map(String::as_str) == Some("ctl") {
        std::process::exit(minisv::ctl::main(args[1..].to_vec()));
    }
    std::process::exit(0)
}
