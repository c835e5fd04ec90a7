//! Remediation decisions — pure. The [`Engine`] sees every raw status change of a (node,
//! component) with the time, counts status flips in a sliding window (flapping), matches the
//! configured rules (`[health.remediation]`) and decides what to do, each decision passed
//! through two sliding-window rate limits (the rule's and the global one). It also holds the
//! open circuits: a flapping component held `fail` until its cool-down ends. Executing a
//! decision (restarting a tree, holding readiness, writing the audit trail) is `remedy.rs`'s job.
//!
//! Scope: `restart` and `not_ready` act on this node only (only the node hosting a tree can
//! restart it); `open_circuit` applies to any node's component in this node's view.

use std::collections::{BTreeMap, VecDeque};

use loom_config::{RemediationAction, RemediationRule, RemediationSection, RemediationTrigger};

/// Most (node, component) pairs whose flips are tracked.
pub const MAX_TRACKED: usize = 4096;
/// Most open circuits.
pub const MAX_CIRCUITS: usize = 256;

/// A sliding-window rate limit: at most `max` events within `window_ms`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    max: u32,
    window_ms: u64,
    times: VecDeque<u64>,
}

impl RateLimit {
    pub fn new(max: u32, window_ms: u64) -> RateLimit {
        RateLimit { max, window_ms, times: VecDeque::new() }
    }

    fn prune(&mut self, now: u64) {
        while self.times.front().is_some_and(|t| now.saturating_sub(*t) >= self.window_ms) {
            self.times.pop_front();
        }
    }

    /// Whether one more event fits now (without taking it).
    pub fn fits(&mut self, now: u64) -> bool {
        self.prune(now);
        (self.times.len() as u64) < u64::from(self.max)
    }

    pub fn take(&mut self, now: u64) {
        self.times.push_back(now);
    }
}

/// Whether a rule's component pattern (`dedup`, `dep:kafka`, `dep:*`, `*`) names a component.
pub fn pattern_matches(pattern: &str, component: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => component.starts_with(prefix),
        None => pattern == component,
    }
}

/// What became of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within both limits: do it.
    Act,
    /// The rule's own limit is spent.
    RuleLimited,
    /// The global limit is spent.
    GlobalLimited,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub rule: String,
    pub node: String,
    pub component: String,
    pub action: RemediationAction,
    /// `fail` or `flapping`.
    pub trigger: &'static str,
    pub verdict: Verdict,
    /// Flips counted in the window (flapping triggers).
    pub flips: usize,
}

type Key = (String, String);

pub struct Engine {
    me: String,
    config: RemediationSection,
    global: RateLimit,
    per_rule: Vec<RateLimit>,
    flips: BTreeMap<Key, VecDeque<u64>>,
    circuits: BTreeMap<Key, u64>,
}

impl Engine {
    pub fn new(me: &str, config: RemediationSection) -> Engine {
        let global = RateLimit::new(config.max_actions, config.window.get().as_millis() as u64);
        let per_rule =
            config.rules.iter().map(|r| RateLimit::new(r.max_actions, r.window.get().as_millis() as u64)).collect();
        Engine { me: me.to_owned(), config, global, per_rule, flips: BTreeMap::new(), circuits: BTreeMap::new() }
    }

    pub fn cool_down_ms(&self) -> u64 {
        self.config.cool_down.get().as_millis() as u64
    }

    /// A raw status change (`from` is `None` on the first observation). Returns the decisions
    /// of every matching rule; `open_circuit` verdicts that act open the circuit here.
    pub fn on_change(&mut self, now: u64, node: &str, component: &str, from: Option<&str>, to: &str) -> Vec<Decision> {
        let key = (node.to_owned(), component.to_owned());
        let flips = match from {
            Some(_) if self.flips.contains_key(&key) || self.flips.len() < MAX_TRACKED => {
                let window = self.config.flap_window.get().as_millis() as u64;
                let ring = self.flips.entry(key.clone()).or_default();
                ring.push_back(now);
                while ring.front().is_some_and(|t| now.saturating_sub(*t) >= window) {
                    ring.pop_front();
                }
                // Never more than needed to tell flapping apart.
                while ring.len() > self.config.flap_threshold as usize + 1 {
                    ring.pop_front();
                }
                ring.len()
            }
            _ => 0,
        };
        if self.config.max_actions == 0 {
            return Vec::new();
        }
        let failing = to == "fail" && from != Some("fail");
        let flapping = flips > self.config.flap_threshold as usize;
        let local = node == self.me;
        let mut out = Vec::new();
        for (i, rule) in self.config.rules.iter().enumerate() {
            if !pattern_matches(&rule.component, component) || !applies(rule, local, component) {
                continue;
            }
            let trigger = match rule.on {
                RemediationTrigger::Fail if failing => "fail",
                RemediationTrigger::Flapping if flapping => "flapping",
                _ => continue,
            };
            if rule.action == RemediationAction::OpenCircuit && self.circuits.contains_key(&key) {
                continue;
            }
            let verdict = limit(&mut self.per_rule[i], &mut self.global, now);
            if verdict == Verdict::Act && rule.action == RemediationAction::OpenCircuit {
                if self.circuits.len() >= MAX_CIRCUITS {
                    continue;
                }
                self.circuits.insert(key.clone(), now + self.cool_down_ms());
                // A fresh count once the circuit closes.
                self.flips.remove(&key);
            }
            out.push(Decision {
                rule: rule.name.clone(),
                node: node.to_owned(),
                component: component.to_owned(),
                action: rule.action,
                trigger,
                verdict,
                flips,
            });
        }
        out
    }

    /// An operator's action: counted against the global limit only.
    pub fn manual(&mut self, now: u64) -> Verdict {
        if self.global.fits(now) {
            self.global.take(now);
            Verdict::Act
        } else {
            Verdict::GlobalLimited
        }
    }

    /// Opens a circuit by hand (or by rule) until `until`.
    pub fn open_circuit(&mut self, node: &str, component: &str, until: u64) {
        if self.circuits.len() < MAX_CIRCUITS || self.circuits.contains_key(&(node.to_owned(), component.to_owned())) {
            self.circuits.insert((node.to_owned(), component.to_owned()), until);
        }
    }

    /// Until when the circuit of a component is open, if it is.
    pub fn circuit(&self, node: &str, component: &str) -> Option<u64> {
        self.circuits.get(&(node.to_owned(), component.to_owned())).copied()
    }

    pub fn circuits(&self) -> impl Iterator<Item = (&Key, &u64)> {
        self.circuits.iter()
    }

    /// Closes the circuits whose cool-down ended; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Key> {
        let done: Vec<Key> = self.circuits.iter().filter(|(_, until)| **until <= now).map(|(k, _)| k.clone()).collect();
        for k in &done {
            self.circuits.remove(k);
            // Flips seen while held do not count towards the next opening.
            self.flips.remove(k);
        }
        done
    }
}

/// `restart` and `not_ready` need this node's own supervision tree; only services restart.
fn applies(rule: &RemediationRule, local: bool, component: &str) -> bool {
    match rule.action {
        RemediationAction::OpenCircuit => true,
        RemediationAction::NotReady => local,
        RemediationAction::Restart => local && crate::graph::kind(component) == "service",
    }
}

fn limit(rule: &mut RateLimit, global: &mut RateLimit, now: u64) -> Verdict {
    if !rule.fits(now) {
        return Verdict::RuleLimited;
    }
    if !global.fits(now) {
        return Verdict::GlobalLimited;
    }
    rule.take(now);
    global.take(now);
    Verdict::Act
}

#[cfg(test)]
mod tests {
    use loom_config::HumanDuration;

    use super::*;

    fn rule(
        name: &str,
        component: &str,
        on: RemediationTrigger,
        action: RemediationAction,
        max: u32,
    ) -> RemediationRule {
        RemediationRule {
            name: name.into(),
            component: component.into(),
            on,
            action,
            max_actions: max,
            window: HumanDuration::from_secs(60),
        }
    }

    fn engine(rules: Vec<RemediationRule>, global: u32) -> Engine {
        let config = RemediationSection {
            max_actions: global,
            window: HumanDuration::from_secs(60),
            flap_threshold: 3,
            flap_window: HumanDuration::from_secs(10),
            cool_down: HumanDuration::from_secs(5),
            rules,
        };
        Engine::new("n1", config)
    }

    /// (decision rule, action name, verdict) for compact expectations.
    fn brief(ds: Vec<Decision>) -> Vec<(String, &'static str, Verdict)> {
        ds.into_iter().map(|d| (d.rule, d.action.name(), d.verdict)).collect()
    }

    #[test]
    fn fail_rules_act_on_entering_fail_locally_within_their_limits() {
        use RemediationAction::*;
        use RemediationTrigger::*;
        let mut e =
            engine(vec![rule("restart", "*", Fail, Restart, 1), rule("drain", "dep:database", Fail, NotReady, 5)], 10);
        // (time, node, component, from, to, expected decisions)
        let cases: Vec<(u64, &str, &str, Option<&str>, &str, Vec<(&str, &str, Verdict)>)> = vec![
            (0, "n1", "dedup", None, "pass", vec![]),
            (1_000, "n1", "dedup", Some("pass"), "fail", vec![("restart", "restart", Verdict::Act)]),
            (1_500, "n1", "dedup", Some("fail"), "fail", vec![]),
            (2_000, "n1", "dedup", Some("fail"), "warn", vec![]),
            (3_000, "n1", "dedup", Some("warn"), "fail", vec![("restart", "restart", Verdict::RuleLimited)]),
            (4_000, "n2", "schema-registry", Some("pass"), "fail", vec![]),
            (5_000, "n1", "dep:database", Some("pass"), "fail", vec![("drain", "not_ready", Verdict::Act)]),
            (61_001, "n1", "dedup", Some("pass"), "fail", vec![("restart", "restart", Verdict::Act)]),
        ];
        for (i, (now, node, c, from, to, want)) in cases.into_iter().enumerate() {
            let want: Vec<(String, &str, Verdict)> = want.into_iter().map(|(r, a, v)| (r.to_owned(), a, v)).collect();
            assert_eq!(brief(e.on_change(now, node, c, from, to)), want, "case {i}");
        }
    }

    #[test]
    fn the_global_limit_caps_every_rule_and_zero_turns_rules_off() {
        use RemediationAction::*;
        use RemediationTrigger::*;
        let mut e = engine(vec![rule("a", "dedup", Fail, Restart, 5), rule("b", "dedup", Fail, NotReady, 5)], 3);
        let got = brief(e.on_change(0, "n1", "dedup", Some("pass"), "fail"));
        assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), [Verdict::Act, Verdict::Act]);
        let got = brief(e.on_change(10, "n1", "dedup", Some("pass"), "fail"));
        assert_eq!(got.iter().map(|d| d.2).collect::<Vec<_>>(), [Verdict::Act, Verdict::GlobalLimited]);
        assert_eq!(e.manual(20), Verdict::GlobalLimited);
        assert_eq!(e.manual(60_001), Verdict::Act);
        let mut off = engine(vec![rule("a", "dedup", Fail, Restart, 5)], 0);
        assert!(off.on_change(0, "n1", "dedup", Some("pass"), "fail").is_empty());
    }

    #[test]
    fn flapping_opens_a_circuit_once_until_its_cool_down_ends() {
        use RemediationAction::*;
        use RemediationTrigger::*;
        let mut e = engine(vec![rule("hold", "dep:*", Flapping, OpenCircuit, 5)], 10);
        let statuses = ["fail", "pass", "fail"];
        for (i, to) in statuses.iter().enumerate() {
            let from = if *to == "fail" { "pass" } else { "fail" };
            assert!(e.on_change(i as u64 * 1000, "n2", "dep:kafka", Some(from), to).is_empty(), "flip {i}");
        }
        // Flips spread wider than the window never count as flapping.
        assert!(e.on_change(20_000, "n2", "dep:kafka", Some("fail"), "pass").is_empty());
        for (i, to) in ["fail", "pass"].iter().enumerate() {
            assert!(e.on_change(21_000 + i as u64 * 100, "n2", "dep:kafka", Some("x"), to).is_empty());
        }
        let opened = e.on_change(21_500, "n2", "dep:kafka", Some("fail"), "pass");
        assert_eq!(brief(opened.clone()), [("hold".to_owned(), "open_circuit", Verdict::Act)]);
        assert_eq!((opened[0].trigger, opened[0].flips), ("flapping", 4));
        assert_eq!(e.circuit("n2", "dep:kafka"), Some(26_500));
        // While open, more flips open nothing more.
        for t in 0..6 {
            assert!(e.on_change(22_000 + t, "n2", "dep:kafka", Some("a"), "b").is_empty());
        }
        assert!(e.expire(26_499).is_empty());
        assert_eq!(e.expire(26_500), [("n2".to_owned(), "dep:kafka".to_owned())]);
        assert_eq!(e.circuit("n2", "dep:kafka"), None);
        // Other components never matched the rule.
        assert!(e.on_change(30_000, "n1", "dedup", Some("pass"), "fail").is_empty());
    }

    #[test]
    fn patterns_match_names_or_prefixes() {
        let cases = [
            ("dedup", "dedup", true),
            ("dedup", "dedup2", false),
            ("dep:*", "dep:kafka", true),
            ("dep:*", "dedup", false),
            ("*", "node", true),
        ];
        for (pattern, component, want) in cases {
            assert_eq!(pattern_matches(pattern, component), want, "{pattern} {component}");
        }
    }
}
