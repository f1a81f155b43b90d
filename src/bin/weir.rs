//! The `weir` command: see [`weir::cli`].

fn main() -> std::process::ExitCode {
    weir::cli::main_with(|_| Ok(()))
}
