//! presidio-anonymizer's default conflict resolution (`MERGE_SIMILAR_OR_CONTAINED` with
//! `merge_entities_with_spaces`, the only one its HTTP API uses), step for step as
//! `AnonymizerEngine.anonymize` in 2.2.366 does it (pure):
//!
//! 1. sort by (start, end), stable;
//! 2. merge intersecting results of the same entity type (strictly positive overlap; the
//!    union, the highest score, the position of the last one absorbed);
//! 3. drop every result contained in another of any type, whatever its score; of results with
//!    the same span keep the highest score, the later one on a tie;
//! 4. merge neighbours of the same type separated only by ASCII spaces (the right one's
//!    score).
//!
//! Partial overlaps of different types survive; the engine's replace builder deals with them.

use std::collections::BTreeMap;

use super::Span;

/// The results the operators run on, in Presidio's order.
pub fn resolve(text: &[char], results: &[Span]) -> Vec<Span> {
    let mut sorted = results.to_vec();
    sorted.sort_by_key(|r| (r.start, r.end));
    let merged = merge_same_type(sorted);
    let unique = remove_contained(merged);
    merge_across_spaces(text, unique)
}

/// `RecognizerResult.intersects`: characters in common, 0 when apart or touching.
fn intersects(a: &Span, b: &Span) -> i64 {
    if a.end < b.start || b.end < a.start {
        return 0;
    }
    a.end.min(b.end) as i64 - a.start.max(b.start) as i64
}

fn merge_same_type(results: Vec<Span>) -> Vec<Span> {
    // Groups in order of first appearance (a dict in Python); the order among groups does not
    // matter, as the result is ordered by position.
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<&str, Vec<(usize, &Span)>> = BTreeMap::new();
    for (position, r) in results.iter().enumerate() {
        if !groups.contains_key(r.entity_type.as_str()) {
            order.push(&r.entity_type);
        }
        groups.entry(&r.entity_type).or_default().push((position, r));
    }
    let mut kept: Vec<(usize, Span)> = Vec::new();
    for name in order {
        let mut group = groups.remove(name).unwrap_or_default();
        group.sort_by_key(|(_, r)| (r.start, r.end));
        let mut iter = group.into_iter();
        let Some((mut position, first)) = iter.next() else { continue };
        let mut current = first.clone();
        for (next_position, r) in iter {
            if intersects(&current, r) == 0 {
                kept.push((position, std::mem::replace(&mut current, r.clone())));
                position = next_position;
                continue;
            }
            current.start = current.start.min(r.start);
            current.end = current.end.max(r.end);
            // Python's max keeps the first of equals.
            if r.rank() > current.rank() {
                current.score = r.score.clone();
            }
            position = position.max(next_position);
        }
        kept.push((position, current));
    }
    kept.sort_by_key(|(position, _)| *position);
    kept.into_iter().map(|(_, r)| r).collect()
}

fn remove_contained(results: Vec<Span>) -> Vec<Span> {
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by_key(|&i| (results[i].start, std::cmp::Reverse(results[i].end)));
    let mut dropped = vec![false; results.len()];
    let mut largest_end: Option<usize> = None;
    let mut at = 0;
    while at < order.len() {
        let first = &results[order[at]];
        let len =
            order[at..].iter().take_while(|&&i| results[i].start == first.start && results[i].end == first.end).count();
        let group = &order[at..at + len];
        if largest_end.is_some_and(|e| e >= first.end) {
            group.iter().for_each(|&i| dropped[i] = true);
        } else {
            // The highest score, then the highest index.
            let survivor =
                group.iter().copied().max_by(|&a, &b| results[a].rank().total_cmp(&results[b].rank()).then(a.cmp(&b)));
            group.iter().filter(|&&i| Some(i) != survivor).for_each(|&i| dropped[i] = true);
        }
        if largest_end.is_none_or(|e| first.end > e) {
            largest_end = Some(first.end);
        }
        at += len;
    }
    results.into_iter().zip(dropped).filter(|(_, d)| !d).map(|(r, _)| r).collect()
}

/// `re.search(r"^( )+$", gap)`: one or more spaces — and, as `$` matches before a final
/// newline, optionally one `\n` after them.
fn only_spaces(gap: &[char]) -> bool {
    let gap = gap.strip_suffix(&['\n']).unwrap_or(gap);
    !gap.is_empty() && gap.iter().all(|&c| c == ' ')
}

fn merge_across_spaces(text: &[char], results: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(results.len());
    for mut r in results {
        if let Some(prev) = out.last()
            && prev.entity_type == r.entity_type
        {
            let gap = text.get(prev.end.min(text.len())..r.start.min(text.len())).unwrap_or(&[]);
            if only_spaces(gap) {
                r.start = prev.start;
                out.pop();
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn span(entity_type: &str, start: usize, end: usize, score: f64) -> Span {
        Span { start, end, entity_type: entity_type.into(), score: json!(score) }
    }

    /// Presidio's 18 conflict cases (`scripts/conflicts.py` against 2.2.366): input results and
    /// the resolved ones as (type, start, end, score), in the order the engine gets them.
    #[test]
    fn resolves_as_presidio_does() {
        type R = (&'static str, usize, usize, f64);
        let cases: &[(&str, &[R], &[R])] = &[
            ("0123456789ABCDEFGHIJ", &[("PERSON", 0, 10, 0.6), ("PERSON", 5, 15, 0.8)], &[("PERSON", 0, 15, 0.8)]),
            (
                "JohnSmith is here",
                &[("PERSON", 0, 4, 0.6), ("PERSON", 4, 9, 0.8)],
                &[("PERSON", 0, 4, 0.6), ("PERSON", 4, 9, 0.8)],
            ),
            (
                "My name is John Smith",
                &[("PERSON", 11, 21, 0.3), ("LOCATION", 16, 21, 0.99)],
                &[("PERSON", 11, 21, 0.3)],
            ),
            ("Call 555-1234 now", &[("PHONE_NUMBER", 5, 13, 0.4), ("US_BANK", 5, 13, 0.7)], &[("US_BANK", 5, 13, 0.7)]),
            ("Call 555-1234 now", &[("PHONE_NUMBER", 5, 13, 0.5), ("US_BANK", 5, 13, 0.5)], &[("US_BANK", 5, 13, 0.5)]),
            (
                "Call 555-1234 now",
                &[("US_BANK", 5, 13, 0.5), ("PHONE_NUMBER", 5, 13, 0.5)],
                &[("PHONE_NUMBER", 5, 13, 0.5)],
            ),
            ("abcdefghij", &[("A", 0, 6, 0.9), ("B", 4, 10, 0.5)], &[("A", 0, 6, 0.9), ("B", 4, 10, 0.5)]),
            ("John Smith", &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)], &[("PERSON", 0, 10, 0.5)]),
            ("John  Smith", &[("PERSON", 0, 4, 0.5), ("PERSON", 6, 11, 0.9)], &[("PERSON", 0, 11, 0.9)]),
            (
                "John\tSmith",
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)],
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)],
            ),
            (
                "John\nSmith",
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)],
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)],
            ),
            (
                "John\u{a0}Smith",
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)],
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5)],
            ),
            (
                "John, Smith",
                &[("PERSON", 0, 4, 0.9), ("PERSON", 6, 11, 0.5)],
                &[("PERSON", 0, 4, 0.9), ("PERSON", 6, 11, 0.5)],
            ),
            (
                "John Berlin",
                &[("PERSON", 0, 4, 0.9), ("LOCATION", 5, 11, 0.5)],
                &[("PERSON", 0, 4, 0.9), ("LOCATION", 5, 11, 0.5)],
            ),
            ("abcdefghijklmno", &[("X", 0, 5, 0.1), ("X", 3, 8, 0.2), ("X", 7, 12, 0.3)], &[("X", 0, 12, 0.3)]),
            ("abcdefghij", &[("X", 0, 10, 0.2), ("X", 2, 5, 0.9)], &[("X", 0, 10, 0.9)]),
            (
                "Anna Maria Lopez x",
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5), ("PERSON", 11, 16, 0.7)],
                &[("PERSON", 0, 16, 0.7)],
            ),
            (
                "John Smith Jr",
                &[("PERSON", 0, 4, 0.9), ("PERSON", 5, 10, 0.5), ("NRP", 5, 13, 0.95)],
                &[("PERSON", 0, 4, 0.9), ("NRP", 5, 13, 0.95)],
            ),
            ("abc", &[("X", 1, 1, 0.5)], &[("X", 1, 1, 0.5)]),
            (
                "John Smith and Bob",
                &[("PERSON", 15, 18, 0.9), ("PERSON", 0, 10, 0.5)],
                &[("PERSON", 0, 10, 0.5), ("PERSON", 15, 18, 0.9)],
            ),
            // `$` before a final newline: a space then a newline still merges.
            ("John \nSmith", &[("PERSON", 0, 4, 0.9), ("PERSON", 6, 11, 0.5)], &[("PERSON", 0, 11, 0.5)]),
            // A zero-width result touching a longer one's end counts as contained.
            ("abcdef", &[("X", 0, 3, 0.5), ("Y", 3, 3, 0.9)], &[("X", 0, 3, 0.5)]),
        ];
        for (text, input, want) in cases {
            let chars: Vec<char> = text.chars().collect();
            let input: Vec<Span> = input.iter().map(|(t, s, e, sc)| span(t, *s, *e, *sc)).collect();
            let want: Vec<Span> = want.iter().map(|(t, s, e, sc)| span(t, *s, *e, *sc)).collect();
            assert_eq!(resolve(&chars, &input), want, "{text:?}");
        }
    }

    #[test]
    fn scores_keep_their_json_form() {
        // Presidio echoes scores as given: an int stays an int, equal scores keep the first.
        let int = Span { start: 0, end: 4, entity_type: "X".into(), score: json!(1) };
        let float = Span { start: 2, end: 6, entity_type: "X".into(), score: json!(1.0) };
        let out = resolve(&"abcdefgh".chars().collect::<Vec<_>>(), &[int, float]);
        assert_eq!((out[0].start, out[0].end, &out[0].score), (0, 6, &Value::from(1)));
    }
}
