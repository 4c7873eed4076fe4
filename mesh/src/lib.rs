//! weave-mesh: one weave network across hosts (issue 13).
//!
//! - `etcd`: a small blocking client for etcd's v3 JSON gateway.
//! - `keys`: the key layout under the prefix (documented there).
//! - `view`: the mesh as read from etcd; `cluster`: the transactions on it.
//! - `agent`, `server`, `local`, `release`, `datapath` (and `kernel`, the real one):
//!   `weave-mesh run`.
//! - `status`: `weave-mesh status`.
//! - `names`: weave DNS across hosts (issue 14): this host's weave DNS containers published
//!   under `names/<host>/<id>` with its lease; the other live hosts' mirrored into
//!   `<state-dir>/mesh/names/<host>.json`, which weave-dns follows (it never talks to etcd).
//!
//! **Timing.** A host registers with a lease of `--lease-ttl` (10 s) renewed every third of
//! it; when its agent dies, its key vanishes within the TTL and every other agent drops it
//! from its VXLAN peers on the watch event (tests: 2.1 s with a 2 s TTL). Its blocks and
//! addresses are reclaimed `--reclaim-after` (300 s) after another agent saw the key gone
//! (the longer of that agent's grace and the one the gone host published), by a transaction
//! that holds only while the host is still unregistered. The grace is long because it is
//! cheap: a dead host's blocks only stay unavailable (a /12 has 16384 /26 blocks) and its
//! exact addresses stay held, while a short one turns an agent restart or an etcd outage
//! longer than TTL + grace into addresses handed out twice (the host's containers keep
//! theirs). `weave-mesh rmhost` reclaims at once. A live host gives back a block that held
//! none of its addresses for `--release-empty-after` (600 s), keeping one empty block of
//! the default range (`release`; the order that keeps the hook out of it is weave-core's mesh
//! contract).
//!
//! **Running it under systemd**, one per host, after etcd is reachable:
//! ```text
//! [Unit]
//! Description=weave mesh agent
//! After=network-online.target
//! Wants=network-online.target
//!
//! [Service]
//! ExecStart=/usr/local/bin/weave-mesh --etcd https://10.0.0.5:2379,https://10.0.0.6:2379 \
//!     --etcd-cacert /etc/weave/ca.pem --etcd-cert /etc/weave/client.pem \
//!     --etcd-key /etc/weave/client.key run --name %H --advertise 10.0.0.21
//! Restart=always
//! RestartSec=2
//! KillSignal=SIGTERM
//!
//! [Install]
//! WantedBy=multi-user.target
//! ```
//! Stopping it keeps the lease and the blocks (running containers keep their addresses and
//! keep talking); a restart within TTL + grace takes them over again.

pub mod agent;
pub mod cluster;
pub mod datapath;
pub mod etcd;
pub mod kernel;
pub mod keys;
pub mod local;
pub mod names;
pub mod release;
pub mod server;
pub mod status;
pub mod view;
