//! `causeway check-config` and configuration errors, as a user meets them
//! on the command line. No PostgreSQL needed.

use std::path::Path;
use std::process::{Command, Output};

use causeway_integration::causeway_bin;

/// The binary with no stray CAUSEWAY_* settings from the test environment.
fn causeway(dir: &Path) -> Command {
    let mut cmd = Command::new(causeway_bin().expect("causeway binary"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CAUSEWAY_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir);
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run causeway")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GOOD: &str = r#"listen_addr = "127.0.0.1"
listen_port = 16432
pool_mode = "transaction"
metrics_addr = ""

[databases.app]
host = "127.0.0.1"
port = 5432
password = "s3cret-db-password"
"#;

/// The error names `file` as given, or relative to the working directory
/// (figment shortens paths under the cwd).
fn names_file(err: &str, file: &Path, cwd: &Path) -> bool {
    err.contains(&file.display().to_string())
        || file
            .strip_prefix(cwd)
            .is_ok_and(|rel| err.contains(&format!(" {}", rel.display())))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The form from the brief: the subcommand first, then `--config`.
#[test]
fn check_config_unknown_key_subcommand_first() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "listen_prot = 7000\n");
    let mut cmd = causeway(dir.path());
    cmd.arg("check-config").arg("--config").arg(&bad);
    let out = run(cmd);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "bad config accepted");
    assert!(
        err.contains("listen_prot"),
        "stderr does not name the key: {err}"
    );
    assert!(
        names_file(&err, &bad, dir.path()),
        "stderr does not name the file: {err}"
    );
}

#[test]
fn check_config_unknown_key_config_first() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "listen_prot = 7000\n");
    let mut cmd = causeway(dir.path());
    cmd.arg("--config").arg(&bad).arg("check-config");
    let out = run(cmd);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "bad config accepted");
    assert!(
        err.contains("listen_prot"),
        "stderr does not name the key: {err}"
    );
    assert!(
        names_file(&err, &bad, dir.path()),
        "stderr does not name the file: {err}"
    );
}

#[test]
fn bad_environment_value_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.toml", GOOD);
    let mut cmd = causeway(dir.path());
    cmd.env("CAUSEWAY_DEFAULT_POOL_SIZE", "abc")
        .arg("--config")
        .arg(&good)
        .arg("check-config");
    let out = run(cmd);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "default_pool_size = abc accepted");
    assert!(
        err.contains("CAUSEWAY_DEFAULT_POOL_SIZE"),
        "stderr does not name the variable: {err}"
    );
}

#[test]
fn set_overrides_and_password_is_masked() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.toml", GOOD);
    let mut cmd = causeway(dir.path());
    cmd.arg("--config")
        .arg(&good)
        .args(["--set", "default_pool_size=7", "check-config"]);
    let out = run(cmd);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "check-config failed: {stderr}");
    assert!(
        stdout.lines().any(|l| l.trim() == "default_pool_size = 7"),
        "--set not applied:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim() == "pool_mode = \"transaction\""),
        "file setting missing:\n{stdout}"
    );
    assert!(
        !stdout.contains("s3cret-db-password") && !stderr.contains("s3cret-db-password"),
        "database password printed in clear:\n{stdout}"
    );
    assert!(
        stdout.contains("password = \"********\""),
        "masked password missing:\n{stdout}"
    );
    // Without --set the file's (default) value shows.
    let mut cmd = causeway(dir.path());
    cmd.arg("--config").arg(&good).arg("check-config");
    let out = run(cmd);
    assert!(out.status.success());
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.trim() == "default_pool_size = 20"),
        "{}",
        text(&out.stdout)
    );
}

/// check-config runs the same checks as startup: a user list that startup
/// refuses fails check-config too (exit 2, the file and line named).
#[test]
fn check_config_refuses_a_broken_user_list() {
    let dir = tempfile::tempdir().unwrap();
    let users = write(
        dir.path(),
        "userlist.txt",
        "\"app\" \"app_pw\"\n\"broken\" \"unterminated\n",
    );
    let cfg = format!("{GOOD}\n").replace(
        "metrics_addr = \"\"\n",
        &format!("metrics_addr = \"\"\nauth_file = \"{}\"\n", users.display()),
    );
    let good = write(dir.path(), "c.toml", &cfg);
    let mut cmd = causeway(dir.path());
    cmd.arg("--config").arg(&good).arg("check-config");
    let out = run(cmd);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "check-config accepted it: {stderr}"
    );
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("userlist.txt"), "{stderr}");
    assert!(text(&out.stdout).is_empty(), "printed a config it refuses");
    // Startup refuses it the same way.
    let mut cmd = causeway(dir.path());
    cmd.arg("--config").arg(&good);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("line 2"));
    // Fixed: accepted.
    std::fs::write(&users, "\"app\" \"app_pw\"\n").unwrap();
    let mut cmd = causeway(dir.path());
    cmd.arg("--config").arg(&good).arg("check-config");
    let out = run(cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A mistyped secret on the command line (wrong type, wrong key, wrong
/// separator) is reported without repeating it.
#[test]
fn mistyped_password_flag_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--set", "databases.x.password=918273645"],
        vec!["--set", "databases.x.monitor_password=918273645"],
        vec!["--set", "monitor_password=918273645"],
        vec!["--set", "databases.x=pw918273645"],
        vec!["--set", "databases.x.password:pw918273645"],
        vec!["--set", "databases.x.password=[\"pw918273645\"]"],
    ] {
        let mut cmd = causeway(dir.path());
        cmd.arg("--no-system-config")
            .args(&args)
            .arg("check-config");
        let out = run(cmd);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(!all.contains("918273645"), "{args:?} echoed: {all}");
        assert!(
            all.contains("databases.x") || all.contains("monitor_password"),
            "{args:?}: {all}"
        );
    }
}

/// Logs written to a file (stderr not a terminal) carry no ANSI colour
/// codes.
#[test]
fn log_file_has_no_colour_codes() {
    let b = causeway_integration::causeway::CausewayBuilder::new().unwrap();
    let cw = b
        .start("log_level = \"debug\"\n[databases.app]\nhost = \"127.0.0.1\"\nport = 1\n")
        .unwrap();
    cw.wait_for_log("listening", std::time::Duration::from_secs(30))
        .unwrap();
    let log = cw.log_contents();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in the log file:\n{log}"
    );
}
