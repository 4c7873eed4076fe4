//! resolv.conf rules of weave DNS: weave first, originals kept as fallback, limits respected.

use weave_runtime::resolv::ResolvConf;

#[test]
fn parsing_ignores_comments_and_unknown_lines_and_keeps_the_last_search() {
    let conf = ResolvConf::parse(
        "# comment\nnameserver 1.1.1.1 # trailing\n; other comment\nsortlist 10.0.0.0\n\
         domain old.example\nsearch a.example b.example\nnameserver 8.8.8.8\n\
         options ndots:1\noptions edns0\n",
    );
    assert_eq!(conf.nameservers, ["1.1.1.1", "8.8.8.8"]);
    assert_eq!(conf.search, ["a.example", "b.example"]);
    assert_eq!(conf.options, ["ndots:1", "edns0"]);
}

#[test]
fn weave_comes_first_duplicates_go_and_three_nameservers_at_most() {
    let conf = ResolvConf::parse(
        "nameserver 10.32.0.1\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nnameserver 9.9.9.9\n\
         search weave.local corp.example\n",
    );
    let weave = conf.for_weave("10.32.0.1".parse().unwrap(), None);
    assert_eq!(weave.nameservers, ["10.32.0.1", "1.1.1.1", "8.8.8.8"]);
    assert_eq!(weave.search, ["weave.local.", "corp.example"]);
}

#[test]
fn an_explicit_search_list_replaces_the_original_one() {
    let conf = ResolvConf::parse("search corp.example\n");
    let search = vec!["a.example".to_owned()];
    let weave = conf.for_weave("10.2.0.53".parse().unwrap(), Some(&search));
    assert_eq!(weave.search, ["weave.local.", "a.example"]);
    assert_eq!(
        weave.render("c1"),
        "# Written by weave-runtime for container c1\nnameserver 10.2.0.53\nsearch weave.local. a.example\n"
    );
}

#[test]
fn ipv6_servers_are_written_as_such() {
    let weave = ResolvConf::default().for_weave("fd00::53".parse().unwrap(), None);
    assert_eq!(weave.nameservers, ["fd00::53"]);
}
