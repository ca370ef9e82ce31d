//! Prometheus's relabel table (conformance-notes §3, R01–R34 and V01–V07)
//! plus behaviours implied by `relabel.go`. Every case runs through both
//! entry points (`relabel` on a builder, copy-on-write `relabel_labels`) and
//! the step debugger, which must agree.

use tributary_model::Labels;
use tributary_relabel::{
    relabel, relabel_labels, relabel_steps, Action, NameValidation, RelabelConfig,
    RelabelConfigBuilder, RelabelError,
};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn build(b: RelabelConfigBuilder) -> RelabelConfig {
    match b.build() {
        Ok(c) => c,
        Err(e) => panic!("rule must be valid: {e}"),
    }
}

/// A replace rule, the most common shape in the table.
fn replace(src: &[&str], regex: &str, target: &str, replacement: &str) -> RelabelConfig {
    build(
        RelabelConfig::builder()
            .source_labels(src.iter().copied())
            .regex(regex)
            .target_label(target)
            .replacement(replacement),
    )
}

fn with_action(action: Action, src: &[&str], regex: &str) -> RelabelConfig {
    build(
        RelabelConfig::builder()
            .action_kind(action)
            .source_labels(src.iter().copied())
            .regex(regex),
    )
}

fn label_action(action: Action, regex: &str) -> RelabelConfig {
    build(RelabelConfig::builder().action_kind(action).regex(regex))
}

fn equal_action(action: Action, src: &str, target: &str) -> RelabelConfig {
    build(
        RelabelConfig::builder()
            .action_kind(action)
            .source_labels([src])
            .target_label(target),
    )
}

fn labelmap(regex: &str, replacement: &str) -> RelabelConfig {
    build(
        RelabelConfig::builder()
            .action_kind(Action::LabelMap)
            .regex(regex)
            .replacement(replacement),
    )
}

/// Runs `rules` through every entry point and checks they agree on `want`
/// (`None` = dropped).
fn check(case: &str, input: &Labels, rules: &[RelabelConfig], want: Option<&Labels>) {
    let cow = relabel_labels(rules, input);
    assert_eq!(cow.as_ref(), want, "{case}: relabel_labels");

    let mut builder = input.to_builder();
    let kept = relabel(rules, &mut builder);
    assert_eq!(kept, want.is_some(), "{case}: relabel keep flag");
    if let Some(w) = want {
        assert_eq!(&builder.labels(), w, "{case}: relabel builder");
    }

    let steps = relabel_steps(rules, input);
    match (steps.last(), want) {
        (None, Some(w)) => assert_eq!(input, w, "{case}: no rules means identity"),
        (None, None) => panic!("{case}: steps are empty but the set was dropped"),
        (Some(last), Some(w)) => {
            assert!(!last.dropped, "{case}: steps say dropped");
            assert_eq!(steps.len(), rules.len(), "{case}: one step per rule");
            assert_eq!(&last.labels, w, "{case}: last step");
        }
        (Some(last), None) => assert!(last.dropped, "{case}: steps say kept"),
    }
}

#[test]
fn r01_replace_with_braced_groups() {
    let input = labels(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
    let rules = [replace(&["a"], "f(.*)", "d", "ch${1}-ch${1}")];
    let want = labels(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")]);
    check("R01", &input, &rules, Some(&want));
}

#[test]
fn r02_chained_replaces_see_earlier_results() {
    let input = labels(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
    let rules = [
        replace(&["a", "b"], "f(.*);(.*)r", "a", "b${1}${2}m"),
        replace(&["c", "a"], "(b).*b(.*)ba(.*)", "d", "$1$2$2$3"),
    ];
    let want = labels(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")]);
    check("R02", &input, &rules, Some(&want));
}

#[test]
fn r03_r04_drop_stops_processing() {
    let rules = [
        with_action(Action::Drop, &["a"], ".*o.*"),
        replace(&["a"], "f(.*)", "d", "ch$1-ch$1"),
    ];
    check("R03", &labels(&[("a", "foo")]), &rules, None);
    let rules = [with_action(Action::Drop, &["a"], ".*o.*")];
    check("R04", &labels(&[("a", "foo"), ("b", "bar")]), &rules, None);
}

#[test]
fn r05_capture_middle_group() {
    let input = labels(&[("a", "abc")]);
    let want = labels(&[("a", "abc"), ("d", "b")]);
    check(
        "R05",
        &input,
        &[replace(&["a"], ".*(b).*", "d", "$1")],
        Some(&want),
    );
}

#[test]
fn r06_to_r09_keep_and_drop_are_anchored() {
    let input = labels(&[("a", "foo")]);
    check(
        "R06",
        &input,
        &[with_action(Action::Drop, &["a"], "no-match")],
        Some(&input),
    );
    check(
        "R07",
        &input,
        &[with_action(Action::Drop, &["a"], "f|o")],
        Some(&input),
    );
    check(
        "R08",
        &input,
        &[with_action(Action::Keep, &["a"], "no-match")],
        None,
    );
    check(
        "R09",
        &input,
        &[with_action(Action::Keep, &["a"], "f.*")],
        Some(&input),
    );
}

#[test]
fn r10_replace_without_match_is_noop() {
    let input = labels(&[("a", "boo")]);
    check(
        "R10",
        &input,
        &[replace(&["a"], "f", "b", "bar")],
        Some(&input),
    );
}

#[test]
fn r11_empty_replacement_deletes_target() {
    let input = labels(&[("a", "foo"), ("f", "baz")]);
    let want = labels(&[("a", "foo")]);
    check(
        "R11",
        &input,
        &[replace(&["a"], "(f).*", "$1", "$2")],
        Some(&want),
    );
}

fn hashmod(src: &str, target: &str, modulus: u64) -> RelabelConfig {
    build(
        RelabelConfig::builder()
            .action("hashmod")
            .source_labels([src])
            .target_label(target)
            .modulus(modulus),
    )
}

#[test]
fn r12_r13_hashmod() {
    let input = labels(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
    let want = labels(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]);
    check("R12", &input, &[hashmod("c", "d", 1000)], Some(&want));

    let input = labels(&[("a", "foo\nbar")]);
    let want = labels(&[("a", "foo\nbar"), ("b", "734")]);
    check("R13", &input, &[hashmod("a", "b", 1000)], Some(&want));
}

#[test]
fn r14_r15_labelmap_copies_and_keeps_originals() {
    let input = labels(&[("a", "foo"), ("b1", "bar"), ("b2", "baz")]);
    let want = labels(&[
        ("a", "foo"),
        ("b1", "bar"),
        ("b2", "baz"),
        ("bar_b1", "bar"),
        ("bar_b2", "baz"),
    ]);
    check("R14", &input, &[labelmap("(b.*)", "bar_${1}")], Some(&want));

    let input = labels(&[
        ("a", "foo"),
        ("__meta_my_bar", "aaa"),
        ("__meta_my_baz", "bbb"),
        ("__meta_other", "ccc"),
    ]);
    let want = labels(&[
        ("a", "foo"),
        ("__meta_my_bar", "aaa"),
        ("__meta_my_baz", "bbb"),
        ("__meta_other", "ccc"),
        ("my_bar", "aaa"),
        ("my_baz", "bbb"),
    ]);
    check(
        "R15",
        &input,
        &[labelmap("__meta_(my.*)", "${1}")],
        Some(&want),
    );
}

#[test]
fn r16_to_r18_templated_targets() {
    let input = labels(&[("a", "some-name-value")]);
    let want = labels(&[("a", "some-name-value"), ("name", "value")]);
    check(
        "R16",
        &input,
        &[replace(&["a"], "some-([^-]+)-([^,]+)", "${1}", "${2}")],
        Some(&want),
    );
    check(
        "R17",
        &input,
        &[replace(&["a"], "some-([^-]+)-([^,]+)", "${1}", "${3}")],
        Some(&input),
    );

    let input = labels(&[("a", "some-name-0")]);
    let rules = [
        replace(&["a"], "some-([^-]+)-([^,]+)", "${3}", "${1}"),
        replace(&["a"], "some-([^-]+)-([^,]+)", "${3}", "${1}"),
        replace(&["a"], "some-([^-]+)(-[^,]+)", "${3}", "${1}"),
    ];
    check("R18", &input, &rules, Some(&input));
}

#[test]
fn r19_real_life_tag_parsing() {
    let tags = "path:/secret,job:some-job,label:foo=bar";
    let input = labels(&[("__meta_sd_tags", tags)]);
    let rules = [
        replace(
            &["__meta_sd_tags"],
            "(?:.+,|^)path:(/[^,]+).*",
            "__metrics_path__",
            "${1}",
        ),
        replace(&["__meta_sd_tags"], "(?:.+,|^)job:([^,]+).*", "job", "${1}"),
        replace(
            &["__meta_sd_tags"],
            "(?:.+,|^)label:([^=]+)=([^,]+).*",
            "${1}",
            "${2}",
        ),
    ];
    let want = labels(&[
        ("__meta_sd_tags", tags),
        ("__metrics_path__", "/secret"),
        ("job", "some-job"),
        ("foo", "bar"),
    ]);
    check("R19", &input, &rules, Some(&want));
}

#[test]
fn r20_labeldrop_then_recreate_then_keep() {
    let port_name = "__meta_kubernetes_pod_container_port_name";
    let metrics_port = "__meta_kubernetes_pod_annotation_XXX_metrics_port";
    let input = labels(&[(port_name, "foo"), (metrics_port, "9091")]);
    let rules = [
        label_action(
            Action::LabelDrop,
            "^__meta_kubernetes_pod_container_port_name$",
        ),
        replace(&[metrics_port], "(.+)", port_name, "metrics"),
        with_action(Action::Keep, &[port_name], "^metrics$"),
    ];
    let want = labels(&[(metrics_port, "9091"), (port_name, "metrics")]);
    check("R20", &input, &rules, Some(&want));
}

#[test]
fn r21_r22_labelkeep_labeldrop() {
    let input = labels(&[("a", "foo"), ("b1", "bar"), ("b2", "baz")]);
    let want = labels(&[("b1", "bar"), ("b2", "baz")]);
    check(
        "R21",
        &input,
        &[label_action(Action::LabelKeep, "(b.*)")],
        Some(&want),
    );
    let want = labels(&[("a", "foo")]);
    check(
        "R22",
        &input,
        &[label_action(Action::LabelDrop, "(b.*)")],
        Some(&want),
    );
}

#[test]
fn r23_upper_and_lower() {
    let input = labels(&[("foo", "bAr123Foo")]);
    let rules = [
        build(
            RelabelConfig::builder()
                .action("Uppercase")
                .source_labels(["foo"])
                .target_label("foo_uppercase"),
        ),
        build(
            RelabelConfig::builder()
                .action("lowercase")
                .source_labels(["foo"])
                .target_label("foo_lowercase"),
        ),
    ];
    let want = labels(&[
        ("foo", "bAr123Foo"),
        ("foo_uppercase", "BAR123FOO"),
        ("foo_lowercase", "bar123foo"),
    ]);
    check("R23", &input, &rules, Some(&want));
}

#[test]
fn r24_to_r27_keepequal_dropequal() {
    let input = labels(&[
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ]);
    check(
        "R24",
        &input,
        &[equal_action(Action::KeepEqual, "__tmp_port", "__port1")],
        Some(&input),
    );
    check(
        "R25",
        &input,
        &[equal_action(Action::DropEqual, "__tmp_port", "__port1")],
        None,
    );
    check(
        "R26",
        &input,
        &[equal_action(Action::DropEqual, "__tmp_port", "__port2")],
        Some(&input),
    );
    check(
        "R27",
        &input,
        &[equal_action(Action::KeepEqual, "__tmp_port", "__port2")],
        None,
    );
}

#[test]
fn r28_to_r31_newlines_and_utf8_names() {
    let base = [("a", "line1\nline2"), ("b", "bar"), ("c", "baz")];
    let input = labels(&base);
    let with = |name: &'static str| {
        let mut pairs = base.to_vec();
        pairs.push((name, "match"));
        labels(&pairs)
    };
    check(
        "R28",
        &input,
        &[replace(&["a"], "line1.*line2", "d", "match${1}")],
        Some(&with("d")),
    );

    let utf8_input = labels(&[("utf-8.label", "line1\nline2"), ("b", "bar"), ("c", "baz")]);
    let want = labels(&[
        ("utf-8.label", "line1\nline2"),
        ("b", "bar"),
        ("c", "baz"),
        ("d", "match"),
    ]);
    let rules = [replace(&["utf-8.label"], "line1.*line2", "d", "match${1}")];
    check("R29", &utf8_input, &rules, Some(&want));

    let rules = [replace(&["a"], "line1.*line2", "utf-8.label", "match${1}")];
    check("R30", &input, &rules, Some(&with("utf-8.label")));
    let rules = [replace(
        &["a"],
        "line1.*line2",
        "utf-8.label${1}",
        "match${1}",
    )];
    check("R31", &input, &rules, Some(&with("utf-8.label")));
}

#[test]
fn r32_named_groups_both_styles() {
    let input = labels(&[("a", "line1\nline2"), ("b", "bar"), ("c", "baz")]);
    let rules = [
        replace(
            &["a"],
            "(line1).*(?<second>line2)",
            "label1_${1}",
            "val_${second}",
        ),
        replace(
            &["a"],
            "(line1).*(?<second>line2)",
            "label2_$1",
            "val_$second",
        ),
    ];
    let want = labels(&[
        ("a", "line1\nline2"),
        ("b", "bar"),
        ("c", "baz"),
        ("label1_line1", "val_line2"),
        ("label2_line1", "val_line2"),
    ]);
    check("R32", &input, &rules, Some(&want));
}

#[test]
fn r33_r34_type_and_unit_labels() {
    let input = labels(&[("__name__", "http_requests_total")]);
    let want = labels(&[("__name__", "http_requests_total"), ("__type__", "counter")]);
    check(
        "R33",
        &input,
        &[replace(&["__name__"], ".*_total$", "__type__", "counter")],
        Some(&want),
    );
    let input = labels(&[("__name__", "disk_usage_bytes")]);
    let want = labels(&[("__name__", "disk_usage_bytes"), ("__unit__", "bytes")]);
    check(
        "R34",
        &input,
        &[replace(&["__name__"], ".*_bytes$", "__unit__", "bytes")],
        Some(&want),
    );
}

#[test]
fn missing_source_labels_join_as_empty() {
    let input = labels(&[("a", "x"), ("b", "y")]);
    let want = labels(&[("a", "x"), ("b", "y"), ("j", "x;;y")]);
    check(
        "join",
        &input,
        &[replace(&["a", "missing", "b"], "(.*)", "j", "$1")],
        Some(&want),
    );
    let rules = [with_action(Action::Keep, &["missing"], "")];
    check("missing is empty", &input, &rules, Some(&input));
    let rules = [build(
        RelabelConfig::builder()
            .source_labels(["a", "b"])
            .separator("")
            .target_label("j"),
    )];
    let want = labels(&[("a", "x"), ("b", "y"), ("j", "xy")]);
    check("empty separator", &input, &rules, Some(&want));
}

#[test]
fn replace_fast_path_sets_literal() {
    let input = labels(&[("a", "x")]);
    let rules = [build(
        RelabelConfig::builder()
            .target_label("env")
            .replacement("prod"),
    )];
    let want = labels(&[("a", "x"), ("env", "prod")]);
    check("static label", &input, &rules, Some(&want));
}

#[test]
fn explicit_empty_replacement_deletes() {
    let input = labels(&[("a", "x"), ("drop_me", "1")]);
    let rules = [build(
        RelabelConfig::builder()
            .source_labels(["a"])
            .target_label("drop_me")
            .replacement(""),
    )];
    check(
        "explicit empty replacement",
        &input,
        &rules,
        Some(&labels(&[("a", "x")])),
    );
}

#[test]
fn explicit_empty_regex_matches_only_empty() {
    let input = labels(&[("a", "x")]);
    check(
        "empty regex, value",
        &input,
        &[with_action(Action::Keep, &["a"], "")],
        None,
    );
    check(
        "empty regex, missing",
        &input,
        &[with_action(Action::Keep, &["zz"], "")],
        Some(&input),
    );
}

#[test]
fn invalid_expanded_target_is_skipped_in_legacy_mode() {
    let input = labels(&[("a", "x.y")]);
    let rule = build(
        RelabelConfig::builder()
            .source_labels(["a"])
            .regex("(.*)")
            .target_label("${1}")
            .replacement("v")
            .name_validation(NameValidation::Legacy),
    );
    check("legacy invalid target", &input, &[rule], Some(&input));
    let rule = replace(&["a"], "(.*)", "${1}", "v");
    let want = labels(&[("a", "x.y"), ("x.y", "v")]);
    check("utf8 valid target", &input, &[rule], Some(&want));
}

#[test]
fn dollar_one_x_is_a_named_group() {
    let input = labels(&[("a", "foo")]);
    let want = labels(&[("a", "foo"), ("t", "foox")]);
    check(
        "${1}x",
        &input,
        &[replace(&["a"], "(.*)", "t", "${1}x")],
        Some(&want),
    );
    // `$1x` is the (missing) group `1x`: empty, so `t` is deleted / not set.
    check(
        "$1x",
        &input,
        &[replace(&["a"], "(.*)", "t", "$1x")],
        Some(&input),
    );
}

#[test]
fn regex_differences_from_rust_defaults() {
    let input = labels(&[("a", "٣"), ("b", "é")]);
    check(
        "\\d ascii",
        &input,
        &[with_action(Action::Keep, &["a"], r"\d")],
        None,
    );
    check(
        "\\w ascii",
        &input,
        &[with_action(Action::Keep, &["b"], r"\w")],
        None,
    );
    check(
        "\\W",
        &input,
        &[with_action(Action::Keep, &["b"], r"\W")],
        Some(&input),
    );
}

#[test]
fn labelmap_sees_labels_as_before_the_rule() {
    // `a_x` maps to `x`; the new `x` must not be mapped again in the same pass.
    let input = labels(&[("a_a_x", "1")]);
    let want = labels(&[("a_a_x", "1"), ("a_x", "1")]);
    check("snapshot", &input, &[labelmap("a_(.*)", "$1")], Some(&want));
}

#[test]
fn unchanged_sets_are_not_copied() {
    let input = labels(&[("a", "1"), ("b", "2")]);
    let rules = [
        with_action(Action::Keep, &["a"], "1"),
        replace(&["a"], "(.*)", "a", "$1"),
        label_action(Action::LabelDrop, "zzz"),
    ];
    let out = relabel_labels(&rules, &input);
    let out = out.as_ref().map(Labels::as_bytes).map(<[u8]>::as_ptr);
    assert_eq!(
        out,
        Some(input.as_bytes().as_ptr()),
        "no rule changed anything"
    );
}

// --- validation (TestRelabelValidate, TestTargetLabelLegacyValidity) ---

fn error_of(b: RelabelConfigBuilder) -> String {
    match b.build() {
        Ok(c) => panic!("expected an error, built {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn v01_empty_action() {
    assert_eq!(
        error_of(RelabelConfig::builder().null_action()),
        "relabel action cannot be empty"
    );
    assert_eq!(
        error_of(RelabelConfig::builder().action("")),
        r#"unknown relabel action """#
    );
    assert_eq!(
        error_of(RelabelConfig::builder().action("nope")),
        r#"unknown relabel action "nope""#
    );
}

#[test]
fn v02_target_label_required() {
    for action in [
        "replace",
        "lowercase",
        "uppercase",
        "keepequal",
        "dropequal",
    ] {
        assert_eq!(
            error_of(RelabelConfig::builder().action(action)),
            format!("relabel configuration for {action} action requires 'target_label' value")
        );
    }
    assert_eq!(
        error_of(RelabelConfig::builder().action("hashmod").modulus(3)),
        "relabel configuration for hashmod action requires 'target_label' value"
    );
}

#[test]
fn v03_lowercase_templated_target_depends_on_scheme() {
    let b = RelabelConfig::builder()
        .action("lowercase")
        .target_label("${3}");
    assert!(b.clone().build().is_ok());
    assert_eq!(
        error_of(b.name_validation(NameValidation::Legacy)),
        r#""${3}" is invalid 'target_label' for lowercase action"#
    );
}

#[test]
fn v04_utf8_replace_targets() {
    for target in ["${3}", "0${3}", "-${3}"] {
        let b = RelabelConfig::builder()
            .source_labels(["a"])
            .regex("some-([^-]+)-([^,]+)")
            .replacement("${1}")
            .target_label(target);
        assert!(b.clone().build().is_ok(), "{target:?} valid in UTF-8 mode");
        let legacy = b.name_validation(NameValidation::Legacy).build();
        let want_err = format!("{target:?} is invalid 'target_label' for replace action");
        match legacy {
            Ok(_) => assert_eq!(target, "${3}", "only ${{3}} is a valid legacy template"),
            Err(e) => assert_eq!(e.to_string(), want_err),
        }
    }
    assert_eq!(
        error_of(
            RelabelConfig::builder()
                .target_label("a.b")
                .name_validation(NameValidation::Legacy)
        ),
        r#""a.b" is invalid 'target_label' for replace action"#
    );
}

#[test]
fn v05_labelmap_replacements() {
    for (regex, rep) in [
        ("__meta_kubernetes_pod_label_(strimzi_io_.+)", "$1"),
        ("__meta_(.+)", "${1}"),
    ] {
        let b = RelabelConfig::builder()
            .action("labelmap")
            .regex(regex)
            .replacement(rep)
            .name_validation(NameValidation::Legacy);
        assert!(b.build().is_ok());
    }
    let b = RelabelConfig::builder()
        .action("labelmap")
        .replacement("-$1")
        .name_validation(NameValidation::Legacy);
    assert_eq!(
        error_of(b),
        r#""-$1" is invalid 'replacement' for labelmap action"#
    );
    let b = RelabelConfig::builder().action("labelmap").replacement("");
    assert_eq!(
        error_of(b),
        r#""" is invalid 'replacement' for labelmap action"#
    );
}

#[test]
fn v06_legacy_target_pattern() {
    let cases = [
        ("-label", false),
        ("label", true),
        ("label${1}", true),
        ("${1}label", true),
        ("${1}", true),
        ("${", false),
        ("$", false),
        ("${}", false),
        ("foo${", false),
        ("$1", true),
        ("asd$2asd", true),
        ("-foo${1}bar-", false),
        ("bar.foo${1}bar", false),
        ("_${1}_", true),
        ("foo${bar}foo", true),
    ];
    for (target, valid) in cases {
        let r = RelabelConfig::builder()
            .target_label(target)
            .name_validation(NameValidation::Legacy)
            .build();
        assert_eq!(r.is_ok(), valid, "{target:?}");
    }
}

#[test]
fn v07_field_restrictions() {
    assert_eq!(
        error_of(RelabelConfig::builder().action("hashmod").target_label("t")),
        "relabel configuration for hashmod requires non-zero modulus"
    );
    assert_eq!(
        error_of(
            RelabelConfig::builder()
                .action("hashmod")
                .target_label("a.b")
                .modulus(2)
                .name_validation(NameValidation::Legacy)
        ),
        r#""a.b" is invalid 'target_label' for hashmod action"#
    );
    let equal = || {
        RelabelConfig::builder()
            .action("keepequal")
            .source_labels(["a"])
            .target_label("b")
    };
    let msg =
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields";
    // Even the default pattern counts when written explicitly.
    assert_eq!(error_of(equal().regex("(.*)")), msg);
    assert_eq!(error_of(equal().separator(",")), msg);
    assert_eq!(error_of(equal().modulus(2)), msg);
    assert_eq!(
        error_of(equal().replacement("x")),
        "'replacement' can not be set for keepequal action"
    );
    assert!(equal().separator(";").build().is_ok());

    let drop = || RelabelConfig::builder().action("labeldrop").regex("x");
    let msg = "labeldrop action requires only 'regex', and no other fields";
    assert_eq!(error_of(drop().source_labels(Vec::<String>::new())), msg);
    assert_eq!(error_of(drop().target_label("t")), msg);
    assert_eq!(error_of(drop().modulus(1)), msg);
    assert_eq!(error_of(drop().separator("")), msg);
    assert_eq!(error_of(drop().replacement("")), msg);
    assert!(drop().build().is_ok());

    for action in ["lowercase", "uppercase", "dropequal"] {
        let b = RelabelConfig::builder()
            .action(action)
            .source_labels(["a"])
            .target_label("t")
            .replacement("$2");
        assert_eq!(
            error_of(b),
            format!("'replacement' can not be set for {action} action")
        );
    }
}

#[test]
fn regex_errors_surface_from_build() {
    let err = RelabelConfig::builder()
        .target_label("t")
        .regex("(unclosed")
        .build();
    assert!(matches!(err, Err(RelabelError::Regex(_))), "{err:?}");
}

#[test]
fn labelmap_to_empty_name_mirrors_prometheus() {
    // Go's Builder.Set("", v) adds a label with an empty name; validation
    // downstream (target/scrape) rejects it, exactly as in Prometheus.
    let input = labels(&[("a", "1")]);
    let out = relabel_labels(&[labelmap("a", "$1")], &input);
    let names: Option<Vec<&str>> = out.as_ref().map(|l| l.iter().map(|l| l.name).collect());
    assert_eq!(names, Some(vec!["", "a"]));
}
