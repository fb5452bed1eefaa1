//! `walctl completions` and `walctl man`: shell completion scripts and a man page,
//! generated from the same clap definition the binary parses with.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use clap_complete::Shell;

use super::exit::Exit;

/// Print a shell completion script.
///
/// Example: walctl completions bash > /etc/bash_completion.d/walctl
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walctl completions bash > /etc/bash_completion.d/walctl
  walctl completions zsh > \"${fpath[1]}/_walctl\"
  walctl completions fish > ~/.config/fish/completions/walctl.fish

Exit codes: 0 the script was printed; 2 usage error (an unknown shell).")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// The commands that have a page of their own, `walctl-COMMAND(1)`.
const PAGES: &[&str] = &[
    "append",
    "checkpoint",
    "dump",
    "verify",
    "segments",
    "inspect",
    "stats",
    "truncate-corrupt",
    "bench",
    #[cfg(feature = "s3")]
    "archive",
    "completions",
    "man",
];

/// Print a man page (roff): walctl(1), or walctl-COMMAND(1) for one command.
///
/// Example: walctl man > /usr/local/share/man/man1/walctl.1
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walctl man > /usr/local/share/man/man1/walctl.1
  walctl man dump | man -l -
  walctl man --out-dir /usr/local/share/man/man1 && mandb -q

Exit codes: 0 the page was printed (or the pages written); 1 a page could not be
written; 2 usage error (an unknown command).")]
pub struct ManArgs {
    /// Print the page of this command (walctl-COMMAND(1)) instead of walctl(1).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(PAGES.iter().copied()))]
    command: Option<String>,
    /// Write walctl.1 and walctl-COMMAND.1 for every command into this directory.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    out_dir: Option<PathBuf>,
}

/// Prints the completion script of `cmd` (the whole command line, from cli/mod.rs).
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<Exit> {
    let mut out = super::output::stdout();
    clap_complete::generate(args.shell, &mut cmd, "walctl", &mut out);
    out.flush()?;
    Ok(Exit::Ok)
}

/// Prints or writes the manual pages of `cli` (the whole command line, from
/// cli/mod.rs).
pub fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<Exit> {
    let mut root = cli.disable_help_subcommand(true);
    root.build();
    if let Some(dir) = &args.out_dir {
        let mut pages = vec![root.clone()];
        pages.extend(root.get_subcommands().cloned());
        for cmd in pages {
            let name = format!("{}.1", cmd.get_display_name().unwrap_or(cmd.get_name()));
            let path = dir.join(&name);
            let mut f = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            render_page(&cmd, &mut f).with_context(|| format!("writing {}", path.display()))?;
            super::output::note(format_args!("wrote {}", path.display()));
        }
        return Ok(Exit::Ok);
    }
    let cmd = match &args.command {
        Some(name) => root
            .find_subcommand(name)
            .cloned()
            .expect("clap checked the name against PAGES"),
        None => root,
    };
    let mut out = super::output::stdout();
    render_page(&cmd, &mut out)?;
    out.flush()?;
    Ok(Exit::Ok)
}

/// One page: clap_mangen's sections, then the command's examples and exit status
/// laid out line by line (clap_mangen would reflow them into one paragraph).
fn render_page(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    if let Some(text) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        writeln!(w, ".SH \"EXAMPLES AND EXIT STATUS\"\n.nf")?;
        for line in text.to_string().lines() {
            writeln!(w, "{}", roff_line(line))?;
        }
        writeln!(w, ".fi")?;
    }
    if cmd.get_version().or(cmd.get_long_version()).is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// A line of text as roff prints it verbatim: backslashes escaped, and a leading
/// `.` or `'` kept from being read as a request.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
