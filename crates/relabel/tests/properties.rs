//! Property tests: algebraic relations between actions and invariants of
//! every result, over random label sets and random rule lists.

use proptest::prelude::*;
use tributary_model::Labels;
use tributary_relabel::{relabel, relabel_labels, relabel_steps, Action, RelabelConfig};

const NAMES: [&str; 6] = ["a", "b", "job", "__name__", "__meta_x", "ab"];
const REGEXES: [&str; 7] = ["(.*)", "a.*", "", "(a|b)(.*)", r"\d+", ".*;.*", "__(.*)"];

fn label_sets() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(
        proptest::sample::select(NAMES.to_vec()),
        "[ab0-9;]{0,4}",
        0..6,
    )
    .prop_map(|m| Labels::from_pairs(m.iter().map(|(k, v)| (*k, v.as_str()))))
}

fn source_labels() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(proptest::sample::select(NAMES.to_vec()), 0..3)
}

fn regexes() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(REGEXES.to_vec())
}

fn built(b: tributary_relabel::RelabelConfigBuilder) -> RelabelConfig {
    match b.build() {
        Ok(c) => c,
        Err(e) => panic!("generated rule must be valid: {e}"),
    }
}

/// Any valid rule, covering every action.
fn rules() -> impl Strategy<Value = RelabelConfig> {
    let target = proptest::sample::select(vec!["a", "b", "t", "${1}", "x_$2"]);
    let replacement = proptest::sample::select(vec!["$1", "", "v", "${2}-$1", "$$"]);
    (
        0usize..8,
        source_labels(),
        regexes(),
        target,
        replacement,
        1u64..10,
    )
        .prop_map(|(kind, src, regex, target, replacement, modulus)| {
            let plain_target = if target.contains('$') { "t" } else { target };
            let b = RelabelConfig::builder();
            match kind {
                0 => built(
                    b.source_labels(src)
                        .regex(regex)
                        .target_label(target)
                        .replacement(replacement),
                ),
                1 => built(b.action("keep").source_labels(src).regex(regex)),
                2 => built(b.action("drop").source_labels(src).regex(regex)),
                3 => built(
                    b.action("hashmod")
                        .source_labels(src)
                        .target_label(plain_target)
                        .modulus(modulus),
                ),
                4 => built(b.action("labelmap").regex(regex).replacement(
                    if replacement.is_empty() {
                        "m_$1"
                    } else {
                        replacement
                    },
                )),
                5 => built(b.action("labeldrop").regex(regex)),
                6 => built(b.action("labelkeep").regex(regex)),
                _ => built(
                    b.action("uppercase")
                        .source_labels(src)
                        .target_label(plain_target),
                ),
            }
        })
}

/// Sorted by name, names unique, values non-empty. (Names may be empty:
/// like Prometheus, a labelmap whose replacement expands to "" writes a
/// label with an empty name, which scrape/target validation then rejects.)
fn is_well_formed(labels: &Labels) -> bool {
    let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (l.name, l.value)).collect();
    pairs.windows(2).all(|w| w[0].0 < w[1].0) && pairs.iter().all(|(_, v)| !v.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_rules_is_identity(input in label_sets()) {
        prop_assert_eq!(relabel_labels(&[], &input), Some(input.clone()));
        let mut b = input.to_builder();
        prop_assert!(relabel(&[], &mut b));
        prop_assert_eq!(b.labels(), input);
    }

    #[test]
    fn keep_and_drop_are_complements(input in label_sets(), src in source_labels(), regex in regexes()) {
        let keep = built(RelabelConfig::builder().action_kind(Action::Keep).source_labels(src.clone()).regex(regex));
        let drop = built(RelabelConfig::builder().action_kind(Action::Drop).source_labels(src).regex(regex));
        let kept = relabel_labels(&[keep], &input);
        let not_dropped = relabel_labels(&[drop], &input);
        prop_assert!(kept.is_some() != not_dropped.is_some());
        if let Some(k) = kept.or(not_dropped) {
            prop_assert_eq!(k, input);
        }
    }

    #[test]
    fn keepequal_and_dropequal_are_complements(input in label_sets(), src in source_labels(), target in proptest::sample::select(NAMES.to_vec())) {
        let keep = built(RelabelConfig::builder().action("keepequal").source_labels(src.clone()).target_label(target));
        let drop = built(RelabelConfig::builder().action("dropequal").source_labels(src).target_label(target));
        prop_assert!(relabel_labels(&[keep], &input).is_some() != relabel_labels(&[drop], &input).is_some());
    }

    #[test]
    fn labeldrop_and_labelkeep_partition(input in label_sets(), regex in regexes()) {
        let dropped = relabel_labels(&[built(RelabelConfig::builder().action("labeldrop").regex(regex))], &input);
        let kept = relabel_labels(&[built(RelabelConfig::builder().action("labelkeep").regex(regex))], &input);
        let (Some(dropped), Some(kept)) = (dropped, kept) else {
            return Err(TestCaseError::fail("label actions never drop the set"));
        };
        prop_assert_eq!(dropped.len() + kept.len(), input.len());
        let merged = Labels::from_pairs(dropped.iter().chain(kept.iter()).map(|l| (l.name, l.value)));
        prop_assert_eq!(merged, input);
    }

    #[test]
    fn results_are_well_formed_and_entry_points_agree(input in label_sets(), rules in proptest::collection::vec(rules(), 0..6)) {
        let cow = relabel_labels(&rules, &input);
        let mut b = input.to_builder();
        let kept = relabel(&rules, &mut b);
        prop_assert_eq!(kept, cow.is_some());
        if let Some(out) = &cow {
            prop_assert!(is_well_formed(out), "{} is not sorted/unique/non-empty", out);
            prop_assert!(out.iter().all(|l| !l.value.is_empty()));
            prop_assert_eq!(&b.labels(), out);
        }
        let steps = relabel_steps(&rules, &input);
        prop_assert_eq!(steps.last().map(|s| s.dropped).unwrap_or(false), cow.is_none());
        for (i, step) in steps.iter().enumerate() {
            prop_assert_eq!(step.rule, i);
            prop_assert!(is_well_formed(&step.labels));
        }
    }

    #[test]
    fn hashmod_stays_below_modulus(input in label_sets(), src in source_labels(), modulus in 1u64..50) {
        let rule = built(RelabelConfig::builder().action("hashmod").source_labels(src).target_label("shard").modulus(modulus));
        let out = relabel_labels(&[rule], &input);
        let shard = out.as_ref().and_then(|l| l.get("shard")).and_then(|v| v.parse::<u64>().ok());
        prop_assert!(shard.is_some_and(|s| s < modulus));
    }
}
