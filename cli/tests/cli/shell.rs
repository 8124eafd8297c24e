//! Shell completions and man pages, used as a shell and `man` use them.

use std::process::Command;

fn drover() -> Command {
    Command::new(env!("CARGO_BIN_EXE_drover"))
}

#[test]
fn bash_completes_subcommands_and_flags_from_the_generated_script() {
    let out = drover().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("drover.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash does on <Tab> after `drover job su` and after
    // `drover job submit --wa`.
    let complete = |words: &str| -> Vec<String> {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _drover drover \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(complete("drover job su"), ["submit"]);
    assert_eq!(complete("drover job submit --wa"), ["--wait"]);
    assert!(complete("drover ''").contains(&"completions".to_owned()));
}

#[test]
fn zsh_and_fish_scripts_name_every_top_level_command() {
    for shell in ["zsh", "fish"] {
        let out = drover().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for command in ["job", "coordinator", "cluster", "worker", "dev"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let out = drover().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn man_pages_cover_every_subcommand_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let out = drover()
        .args(["man", "--out", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(out_dir.join("drover-job-submit.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH drover-job-submit"),
        "{page}"
    );
    assert!(page.contains("idempotency"), "{page}");
    for name in [
        "drover.1",
        "drover-dev.1",
        "drover-cluster-status.1",
        "drover-man.1",
    ] {
        assert!(out_dir.join(name).exists(), "{name}");
    }
}
