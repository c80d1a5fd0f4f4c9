fn main() -> std::process::ExitCode {
    // `rhx plan … | head` ends quietly, as Unix tools do, instead of panicking on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    rhx::cli::main()
}
