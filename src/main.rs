//! `apikey-rotator`: the Azure Functions custom handler and its command line.

fn main() -> std::process::ExitCode {
    apikey_rotator::cli::main()
}
