fn main() -> std::process::ExitCode {
    urlcap::cli::main()
}
