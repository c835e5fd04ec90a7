//! Identity groups: connected components over link edges whose confidence reaches the
//! threshold. Computed on demand by a breadth-first walk over the (bounded) edges around a
//! device, which makes unlinking trivially correct — removing an edge may split a group — and
//! guardrails checkable before a merge: the merged group may not exceed a maximum size, and
//! blocked ids (nil, max, self-links) never link. Pure logic, table-tested.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// An undirected edge between two devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub a: String,
    pub b: String,
    pub confidence: f64,
}

/// The group of `start` over `edges` with confidence ≥ `threshold`.
pub fn component(start: &str, edges: &[Edge], threshold: f64) -> BTreeSet<String> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges.iter().filter(|e| e.confidence >= threshold) {
        adj.entry(&e.a).or_default().push(&e.b);
        adj.entry(&e.b).or_default().push(&e.a);
    }
    let mut seen = BTreeSet::from([start.to_owned()]);
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for m in adj.get(n).into_iter().flatten() {
            if seen.insert((*m).to_owned()) {
                queue.push_back(m);
            }
        }
    }
    seen
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Blocked(String),
    SelfLink,
    TooLarge { size: usize, max: usize },
}

const BLOCKED: [&str; 2] = ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"];

/// Checks a link between `a` and `b` given their current groups.
pub fn check_link(
    a: &str,
    b: &str,
    group_a: &BTreeSet<String>,
    group_b: &BTreeSet<String>,
    max: usize,
) -> Result<(), Refusal> {
    for id in [a, b] {
        if BLOCKED.contains(&id.to_ascii_lowercase().as_str()) {
            return Err(Refusal::Blocked(id.to_owned()));
        }
    }
    if a.eq_ignore_ascii_case(b) {
        return Err(Refusal::SelfLink);
    }
    let size = group_a.union(group_b).count();
    if size > max {
        return Err(Refusal::TooLarge { size, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: &str, b: &str, c: f64) -> Edge {
        Edge { a: a.into(), b: b.into(), confidence: c }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn groups_are_transitive_respect_the_threshold_and_split_on_unlink() {
        let edges = vec![e("a", "b", 0.9), e("b", "c", 0.95), e("c", "d", 0.5), e("x", "y", 0.99)];
        // (start, edges, threshold, expected)
        let cases: Vec<(&str, Vec<Edge>, f64, BTreeSet<String>)> = vec![
            ("a", edges.clone(), 0.8, set(&["a", "b", "c"])),
            ("d", edges.clone(), 0.8, set(&["d"])),
            ("d", edges.clone(), 0.5, set(&["a", "b", "c", "d"])),
            ("a", edges[1..].to_vec(), 0.8, set(&["a"])),
            ("c", edges[1..].to_vec(), 0.8, set(&["b", "c"])),
            ("y", edges.clone(), 0.8, set(&["x", "y"])),
        ];
        for (i, (start, edges, threshold, want)) in cases.into_iter().enumerate() {
            assert_eq!(component(start, &edges, threshold), want, "case {i}");
        }
    }

    #[test]
    fn guardrails_refuse_blocked_self_and_oversized_merges() {
        let small = set(&["a", "b"]);
        let big = set(&["c", "d", "e"]);
        assert_eq!(check_link("a", "c", &small, &big, 5), Ok(()));
        assert_eq!(check_link("a", "c", &small, &big, 4), Err(Refusal::TooLarge { size: 5, max: 4 }));
        assert_eq!(check_link("a", "A", &small, &small, 5), Err(Refusal::SelfLink));
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(check_link(nil, "c", &small, &big, 9), Err(Refusal::Blocked(nil.into())));
        // already in one group: the size does not grow
        assert_eq!(check_link("a", "b", &small, &small, 2), Ok(()));
    }
}
