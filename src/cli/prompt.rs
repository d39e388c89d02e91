//! What `login` asks of the user: a user name and a password on the
//! terminal (the password without echo), or the password on stdin.

use std::io::{self, BufRead, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};

/// A line typed on the terminal after `prompt`.
pub fn line(prompt: &str) -> Result<String> {
    if !io::stdin().is_terminal() {
        bail!("no user name given: use -u USER (stdin is not a terminal to ask on)");
    }
    eprint!("{prompt}");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read from the terminal")?;
    Ok(answer.trim_end_matches(['\r', '\n']).to_string())
}

/// A password typed on the terminal, not echoed.
pub fn password(prompt: &str) -> Result<String> {
    if !io::stdin().is_terminal() {
        bail!("no password given: use --password-stdin (stdin is not a terminal to ask on)");
    }
    let _echo = EchoOff::new();
    let answer = line(prompt);
    eprintln!();
    answer
}

/// The password piped to stdin: all of it, less one trailing newline.
pub fn stdin_password() -> Result<String> {
    let mut password = String::new();
    io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from stdin")?;
    let password = password
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&password)
        .to_string();
    if password.is_empty() {
        bail!("the password read from stdin is empty");
    }
    Ok(password)
}

/// Terminal echo turned off for as long as it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own; on
        // failure nothing is changed and the password is echoed.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}
