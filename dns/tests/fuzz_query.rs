//! The fuzz target's entry point (`weave_dns::fuzz::QueryFuzz`, see fuzz/) in every
//! `cargo test`, without libFuzzer: the committed corpus, each seed cut at every length,
//! a few thousand mutations of the seeds, random bytes, a label pointer loop and 64 KiB of
//! garbage. Any panic is a bug (the entry point also checks every reply).

use std::path::Path;

use weave_dns::fuzz::QueryFuzz;

const MUTATIONS: usize = 5_000;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dns_query");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 10, "the corpus has {} seeds", seeds.len());
    seeds.sort();
    seeds
}

/// xorshift64: the same inputs on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four edits: overwrite, insert or delete a byte, or splice in part of a seed.
fn mutate(seed: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut packet = seed.to_vec();
    for _ in 0..rng.below(4) + 1 {
        let at = rng.below(packet.len() + 1);
        match rng.below(4) {
            0 if at < packet.len() => packet[at] = rng.next() as u8,
            1 => packet.insert(at, rng.next() as u8),
            2 if at < packet.len() => {
                packet.remove(at);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1);
                packet.splice(at..at, other[from..from + len].iter().copied());
            }
        }
    }
    packet
}

#[test]
fn the_corpus_and_its_mutations_through_the_responder() {
    let fuzz = QueryFuzz::new();
    let seeds = corpus();
    for seed in &seeds {
        for cut in 0..=seed.len() {
            fuzz.run(&seed[..cut]);
        }
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..MUTATIONS {
        let seed = &seeds[rng.below(seeds.len())];
        fuzz.run(&mutate(seed, &seeds, &mut rng));
        let noise: Vec<u8> = (0..rng.below(600)).map(|_| rng.next() as u8).collect();
        fuzz.run(&noise);
    }
    // A question whose name points at itself, and a 64 KiB packet of pointers.
    let mut looped = seeds[0][..12].to_vec();
    looped[5] = 1;
    looped.extend([0xc0, 12, 0, 1, 0, 1]);
    fuzz.run(&looped);
    fuzz.run(&vec![0xc0; 65535]);
}
