//! Keyed ownership by rendezvous (highest-random-weight) hashing: every candidate node scores
//! the key with a stable 64-bit hash of (node name, key) and the highest score owns it. Adding a
//! node moves only the keys it now wins (about 1/N); removing one moves only the keys it owned.
//! Node names, not generations, are hashed, so a restarted node gets its keys back.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The score of `node` for `key`. Stable across processes, versions and platforms.
pub fn score(node: &str, key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, xxh3_64_with_seed(node.as_bytes(), 0x4c4f_4f4d))
}

/// The owner of `key` among `nodes` (ties, which need equal 64-bit scores, go to the smaller
/// name so every node decides the same). `None` when there are no candidates.
pub fn owner<'a>(nodes: impl IntoIterator<Item = &'a str>, key: &[u8]) -> Option<&'a str> {
    nodes.into_iter().map(|n| (score(n, key), n)).max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1))).map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("device-{i}")).collect()
    }

    #[test]
    fn owners_are_stable_and_independent_of_order() {
        let a = ["loom-1", "loom-2", "loom-3"];
        let b = ["loom-3", "loom-1", "loom-2"];
        for k in keys(500) {
            assert_eq!(owner(a, k.as_bytes()), owner(b, k.as_bytes()));
        }
        assert_eq!(owner([], b"x"), None);
        assert_eq!(owner(["only"], b"x"), Some("only"));
    }

    #[test]
    fn adding_a_node_moves_about_one_nth_and_only_to_it() {
        // (nodes before, node added, expected fraction moved)
        let cases: &[(&[&str], &str, f64)] = &[
            (&["a", "b", "c"], "d", 0.25),
            (&["a", "b"], "c", 1.0 / 3.0),
            (&["a", "b", "c", "d", "e"], "f", 1.0 / 6.0),
        ];
        let keys = keys(20_000);
        for (before, added, want) in cases {
            let after: Vec<&str> = before.iter().copied().chain([*added]).collect();
            let mut moved = 0;
            for k in &keys {
                let (old, new) =
                    (owner(before.iter().copied(), k.as_bytes()), owner(after.iter().copied(), k.as_bytes()));
                if old != new {
                    assert_eq!(new, Some(*added), "keys only move to the new node");
                    moved += 1;
                }
            }
            let fraction = moved as f64 / keys.len() as f64;
            assert!((fraction - want).abs() < 0.02, "adding {added} to {before:?} moved {fraction}, want ~{want}");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let all = ["a", "b", "c", "d"];
        let rest = ["a", "b", "d"];
        for k in keys(5_000) {
            let old = owner(all, k.as_bytes()).unwrap();
            let new = owner(rest, k.as_bytes()).unwrap();
            if old != "c" {
                assert_eq!(old, new);
            }
        }
    }
}
