//! weave-runtime: see the library documentation; this only reports the error, if any.

/// `--weave-help`: weave-runtime's own usage. Every other argument, `--help` included, is
/// the real runtime's.
const HELP: &str = "\
weave-runtime: a runc-compatible runtime that attaches containers to the weave network.

Usage: weave-runtime [--weave-FLAG=VALUE]... <runc arguments>

For `create` and `run` of a container that asks for weave (annotations weave.cidr or
weave.dns, or WEAVE_CIDR in its environment; weave.cidr=none opts out), it adds weave-hook to
the bundle's config.json (createRuntime: attach, poststop: detach) and, for weave.dns=true,
points /etc/resolv.conf at weave DNS. Then, for every command, it execs the real runtime with
the same arguments, minus its own flags. A container that asks for nothing is passed through
with config.json untouched.

Its own flags come before the runc subcommand (where daemon.json runtimeArgs puts them):
  --weave-runtime PATH         the real runtime [env WEAVE_RUNTIME; default: runc on PATH]
  --weave-hook-path PATH       weave-hook [env WEAVE_HOOK_PATH; default: next to weave-runtime]
  --weave-bridge NAME          passed to weave-hook as --bridge
  --weave-ipalloc-range CIDR   passed as --ipalloc-range
  --weave-state-dir DIR        passed as --state-dir; resolv.conf files go to DIR/resolv/
  --weave-mtu N                passed as --mtu
  --weave-log-level LEVEL      passed as --log-level
  --weave-dns-addr CIDR        passed as --dns-addr; the nameserver of weave.dns containers
  --weave-help                 this text

Per container: weave.cidr, weave.dns, weave.dns.names, weave.dns.shared, weave.dns.server,
weave.dns.search and weave.route annotations; WEAVE_CIDR=... in the environment (Docker < 24).
";

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--weave-help") {
        print!("{HELP}");
        return;
    }
    let err = weave_runtime::shim::run(args);
    eprintln!("weave-runtime: {err}");
    std::process::exit(1);
}
