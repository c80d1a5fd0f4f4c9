fn main() -> std::process::ExitCode {
    rhx::cli::main()
}
