//! `completions` and `man`: shell completion scripts and a man page generated at run time
//! from the clap definitions, so what is installed always matches the binary that printed
//! it. Neither reads a config file nor talks to a daemon: a package build or an operator
//! runs them on a host where neither exists yet.

use super::args::{Cli, ShellArg};
use super::exit;
use clap::CommandFactory;
use std::io::Write;

/// The program name completions are registered for (what operators type).
const BIN_NAME: &str = "splice-dr";

/// Prints the completion script for `shell`; returns the exit code.
pub fn completions(shell: ShellArg) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(
        shell.generator(),
        &mut Cli::command(),
        BIN_NAME,
        &mut script,
    );
    emit(&script)
}

/// Prints the man page (section 1, roff); returns the exit code.
pub fn man() -> u8 {
    let page = clap_mangen::Man::new(Cli::command())
        .title("SPLICE-DR")
        .date(crate::build_info::BUILD_DATE)
        .manual("User Commands");
    let mut roff = Vec::new();
    if let Err(e) = page.render(&mut roff) {
        eprintln!("error: cannot render the man page: {e}");
        return exit::FAILED;
    }
    emit(&roff)
}

impl ShellArg {
    fn generator(self) -> clap_complete::Shell {
        match self {
            ShellArg::Bash => clap_complete::Shell::Bash,
            ShellArg::Zsh => clap_complete::Shell::Zsh,
            ShellArg::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Writes `bytes` to stdout. A reader that closed the pipe early (`| head`) had what it
/// wanted: not an error.
fn emit(bytes: &[u8]) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: ShellArg) -> String {
        let mut out = Vec::new();
        clap_complete::generate(shell.generator(), &mut Cli::command(), BIN_NAME, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_shell_completes_the_subcommands() {
        for shell in [ShellArg::Bash, ShellArg::Zsh, ShellArg::Fish] {
            let s = script(shell);
            assert!(
                s.contains("restore") && s.contains("completions"),
                "{shell:?}"
            );
        }
    }

    #[test]
    fn the_man_page_has_a_title_and_lists_the_subcommands() {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .title("SPLICE-DR")
            .render(&mut out)
            .unwrap();
        let roff = String::from_utf8(out).unwrap();
        assert!(roff.contains(".TH SPLICE-DR 1"), "{roff}");
        assert!(roff.contains("restore") && roff.contains("completions"));
    }
}
