fn main() -> std::process::ExitCode {
    tolk::cli::main()
}
