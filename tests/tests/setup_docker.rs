//! `weave-setup docker` against a real dockerd of the test's own: its own config file, data
//! root, exec root, socket and pidfile, started inside a throwaway host network namespace
//! (so docker0, its iptables rules and weave's bridge stay there) and a private mount
//! namespace (so its mounts vanish with it).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use weave_e2e::docker::Dockerd;
use weave_e2e::{bin, root_or_skip, run_ok, tool_or_skip, unique, Rootfs, TestHost};

/// Flags that point weave-setup's --reload at this dockerd.
fn reload_flags(dockerd: &Dockerd) -> Vec<String> {
    vec![
        "--reload".into(),
        "--pidfile".into(),
        dockerd.pidfile().display().to_string(),
        "--docker-host".into(),
        dockerd.socket_uri(),
    ]
}

/// The test's network: a bridge name and hook state of its own, handed to weave-runtime
/// through `--runtime-arg`.
struct Weave {
    bridge: String,
    state: tempfile::TempDir,
}

impl Weave {
    fn new() -> Self {
        Self {
            bridge: unique("wvd"),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn setup_docker(&self, config: &Path, extra: &[String]) -> Output {
        Command::new(bin("weave-setup"))
            .arg("docker")
            .arg("--config")
            .arg(config)
            .arg("--runtime-path")
            .arg(bin("weave-runtime"))
            .arg(format!(
                "--runtime-arg=--weave-hook-path={}",
                bin("weave-hook").display()
            ))
            .arg(format!("--runtime-arg=--weave-bridge={}", self.bridge))
            .arg(format!(
                "--runtime-arg=--weave-state-dir={}",
                self.state.path().display()
            ))
            .args(extra)
            .output()
            .unwrap()
    }

    fn ps(&self) -> String {
        run_ok(
            Command::new(bin("weave-hook"))
                .arg("--state-dir")
                .arg(self.state.path())
                .arg("ps"),
        )
    }
}

fn prerequisites(test: &str) -> bool {
    root_or_skip(test)
        && tool_or_skip(test, "dockerd")
        && tool_or_skip(test, "docker")
        && tool_or_skip(test, "containerd")
        && tool_or_skip(test, "runc")
}

fn succeeded(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker run --runtime weave` whose first instruction prints ethwe's address.
fn run_attached(dockerd: &Dockerd, cidr: &str) -> Output {
    dockerd.run(&[
        "run",
        "--rm",
        "--runtime",
        "weave",
        "--annotation",
        &format!("weave.cidr={cidr}"),
        "bb:latest",
        "sh",
        "-c",
        "ip -o -4 addr show ethwe",
    ])
}

/// A user's daemon.json with settings of its own that must survive the merge.
const USER_CONFIG: &str = r#"{
  "log-level": "warn",
  "log-opts": {
    "max-size": "10m",
    "max-file": "3"
  },
  "default-ulimits": {
    "nofile": {
      "Name": "nofile",
      "Hard": 4096,
      "Soft": 1024
    }
  },
  "labels": [
    "owner=ünïcødé"
  ]
}
"#;

#[test]
fn dockerd_started_with_the_written_config_attaches_containers() {
    let test = "dockerd_started_with_the_written_config_attaches_containers";
    if !prerequisites(test) {
        return;
    }
    let host = TestHost::new();
    let weave = Weave::new();
    let dir = Dockerd::new_dir();
    let config = Dockerd::config_path(dir.path());
    fs::write(&config, USER_CONFIG).unwrap();
    succeeded(&weave.setup_docker(&config, &[]), "weave-setup docker");
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(written["labels"][0], "owner=ünïcødé");
    assert_eq!(written["default-ulimits"]["nofile"]["Hard"], 4096);

    let dockerd = Dockerd::start_with_config(&host, dir);
    assert!(
        dockerd.runtimes().contains("weave"),
        "{}",
        dockerd.runtimes()
    );
    dockerd.import(&Rootfs::busybox());
    for i in 0..5 {
        let cidr = format!("10.2.8.{}/24", 5 + i);
        let stdout = succeeded(&run_attached(&dockerd, &cidr), "docker run --runtime weave");
        assert!(
            stdout.contains(&format!("inet {cidr} ")),
            "run {i}: the first instruction saw {stdout:?}"
        );
        assert_eq!(weave.ps(), "", "run {i}: the reservation was not released");
    }
    assert_eq!(host.veths_left(), Vec::<String>::new());

    let status = run_ok(
        Command::new(bin("weave-setup"))
            .args(["status", "--config"])
            .arg(&config)
            .args(&reload_flags(&dockerd)[1..]),
    );
    assert!(
        status.contains(&format!("dockerd: pid {} reads", dockerd.pid())),
        "{status}"
    );
    assert!(status.contains("lists runtime \"weave\""), "{status}");
    assert!(
        status.contains(&format!(
            "  weave-hook: {} (--weave-hook-path in runtimeArgs)\n",
            bin("weave-hook").display()
        )),
        "status checks the weave-hook weave-runtime runs: {status}"
    );
}

#[test]
fn reload_makes_a_running_dockerd_use_the_runtime_and_uninstall_reload_drops_it() {
    let test = "reload_makes_a_running_dockerd_use_the_runtime_and_uninstall_reload_drops_it";
    if !prerequisites(test) {
        return;
    }
    let host = TestHost::new();
    let weave = Weave::new();
    let dir = Dockerd::new_dir();
    let config = Dockerd::config_path(dir.path());
    fs::write(&config, USER_CONFIG).unwrap();
    let dockerd = Dockerd::start_with_config(&host, dir);
    dockerd.import(&Rootfs::busybox());
    assert!(!dockerd.runtimes().contains("weave"));
    let pid = dockerd.pid();

    // A --reload aimed at a dockerd that reads another file changes nothing.
    let other = tempfile::tempdir().unwrap();
    let other_config = other.path().join("daemon.json");
    fs::write(&other_config, "{}").unwrap();
    let out = weave.setup_docker(&other_config, &reload_flags(&dockerd));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("weave-setup: ") && stderr.contains("not changed"),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(&other_config).unwrap(), "{}");

    succeeded(
        &weave.setup_docker(&config, &reload_flags(&dockerd)),
        "weave-setup docker --reload",
    );
    assert!(
        dockerd.runtimes().contains("weave"),
        "{}",
        dockerd.runtimes()
    );
    let stdout = succeeded(&run_attached(&dockerd, "10.2.4.4/24"), "run after reload");
    assert!(stdout.contains("inet 10.2.4.4/24 "), "{stdout:?}");
    assert_eq!(weave.ps(), "");

    let mut uninstall = vec!["uninstall".to_string(), "docker".into(), "--config".into()];
    uninstall.push(config.display().to_string());
    uninstall.extend(reload_flags(&dockerd));
    succeeded(
        &Command::new(bin("weave-setup"))
            .args(&uninstall)
            .output()
            .unwrap(),
        "weave-setup uninstall docker --reload",
    );
    assert!(
        !dockerd.runtimes().contains("weave"),
        "{}",
        dockerd.runtimes()
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), USER_CONFIG);
    let out = run_attached(&dockerd, "10.2.4.4/24");
    assert!(
        !out.status.success(),
        "the runtime is still usable after uninstall"
    );
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        "dockerd",
        "the same dockerd must still run: reloaded, not restarted"
    );
}

/// A second identical `docker --reload` (and `uninstall docker --reload`) leaves dockerd
/// alone; dockerd logs every SIGHUP it gets at level info.
#[test]
fn repeated_install_and_uninstall_reload_dockerd_only_once() {
    let test = "repeated_install_and_uninstall_reload_dockerd_only_once";
    if !prerequisites(test) {
        return;
    }
    let host = TestHost::new();
    let weave = Weave::new();
    let dir = Dockerd::new_dir();
    let config = Dockerd::config_path(dir.path());
    let original = "{\n  \"log-level\": \"info\"\n}\n";
    fs::write(&config, original).unwrap();
    let dockerd = Dockerd::start_with_config(&host, dir);
    let reloads = || {
        // A signal is handled after kill(2) returns: give a stray one time to show up.
        std::thread::sleep(std::time::Duration::from_millis(500));
        dockerd
            .log()
            .matches("Got signal to reload configuration")
            .count()
    };
    let default_runtime = || dockerd.ok(&["info", "--format", "{{.DefaultRuntime}}"]);

    let mut install = reload_flags(&dockerd);
    install.push("--set-as-default".into());
    succeeded(&weave.setup_docker(&config, &install), "first install");
    assert_eq!(reloads(), 1, "{}", dockerd.log());
    assert_eq!(default_runtime().trim(), "weave");
    let stdout = succeeded(&weave.setup_docker(&config, &install), "second install");
    assert!(stdout.contains("not reloaded"), "{stdout}");
    assert_eq!(reloads(), 1, "{}", dockerd.log());

    let mut uninstall = vec!["uninstall".to_string(), "docker".into(), "--config".into()];
    uninstall.push(config.display().to_string());
    uninstall.extend(reload_flags(&dockerd));
    let run_uninstall = || {
        Command::new(bin("weave-setup"))
            .args(&uninstall)
            .output()
            .unwrap()
    };
    succeeded(&run_uninstall(), "first uninstall");
    assert_eq!(reloads(), 2, "{}", dockerd.log());
    assert_eq!(default_runtime().trim(), "runc");
    assert!(!dockerd.runtimes().contains("weave"));
    let stdout = succeeded(&run_uninstall(), "second uninstall");
    assert!(stdout.contains("not reloaded"), "{stdout}");
    assert_eq!(reloads(), 2, "{}", dockerd.log());
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
}
