//! `minisv`: the daemon (`minisv [options]`), and its subcommands `ctl`, `echo-conf`, `check`.

use minisv::cli;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv.first().cloned().unwrap_or_else(|| "minisv".to_string());
    let code = match argv.get(1).map(String::as_str) {
        Some("echo-conf") => {
            print!("{}", cli::echo_conf());
            0
        }
        Some("ctl") => minisv::ctl::main(argv[2..].to_vec()),
        Some("check") => match cli::parse_daemon_args(&argv0, &argv[2..]) {
            Ok(args) => cli::check(&argv0, &args),
            Err(exit) => exit.print(),
        },
        _ => match cli::parse_daemon_args(&argv0, &argv[1..]) {
            Ok(args) if args.test => cli::check(&argv0, &args),
            Ok(args) => minisv::daemon::run(&argv0, &args),
            Err(exit) => exit.print(),
        },
    };
    std::process::exit(code)
}
