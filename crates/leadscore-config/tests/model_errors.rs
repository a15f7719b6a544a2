//! Model files with mistakes give errors that name the key path, the value and
//! what was expected; the shipped seed model compiles to the reference model.

use leadscore_config::{parse_model, seed_model, SEED_MODEL_TOML};

fn error_of(edit: impl Fn(&str) -> String) -> String {
    let text = edit(SEED_MODEL_TOML);
    match parse_model(&text) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should mention {p:?}");
    }
}

#[test]
fn seed_model_has_every_rule_criterion_and_segment() {
    let m = seed_model();
    assert_eq!(m.version, "seed-1");
    let rules: Vec<_> = m.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        rules,
        [
            "page-view",
            "pricing-page",
            "email-click",
            "email-open",
            "download",
            "form-submit",
            "webinar-attended",
            "search",
            "unsubscribe",
            "hard-bounce"
        ]
    );
    let criteria: Vec<_> = m.grade.criteria.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        criteria,
        [
            "title-exec",
            "title-manager",
            "title-student",
            "size-enterprise",
            "size-mid",
            "size-small",
            "industry-target",
            "region-target",
            "revenue",
            "tech-fit",
            "free-email"
        ]
    );
    let segments: Vec<_> = m.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        segments,
        [
            "score-low",
            "score-medium",
            "score-high",
            "sales-ready",
            "no-score",
            "inactive-60d",
            "untouched-60d",
            "hard-bounced",
            "soft-bounced-4x",
            "surging",
            "cooling",
            "interest-analytics",
            "interest-automation",
            "persona-decision-maker",
            "persona-information-gatherer",
            "persona-champion",
            "customer",
            "open-opportunity"
        ]
    );
    assert_eq!(m.score.half_life, 30 * 24 * 3600 * 1000);
    assert_eq!(m.grade.start, 20.0);
}

#[test]
fn wrong_type_names_the_key() {
    let msg = error_of(|s| s.replacen("points = 15", "points = \"fifteen\"", 1));
    assert_has(&msg, &["rules[5].points", "fifteen"]);
}

#[test]
fn unknown_key_is_an_error() {
    let msg = error_of(|s| s.replacen("points = 15", "points = 15\npoitns = 3", 1));
    assert_has(&msg, &["rules[5]", "poitns"]);
}

#[test]
fn unknown_property_names_the_kind_and_lists_its_properties() {
    let msg = error_of(|s| {
        s.replacen(
            "{ field = \"url\", contains = \"/pricing\" }",
            "{ field = \"link_url\", contains = \"/pricing\" }",
            1,
        )
    });
    assert_has(&msg, &["rules[1].when[0].field", "page_view events have no property link_url", "url, title"]);
}

#[test]
fn bad_duration_names_the_key_and_value() {
    let msg = error_of(|s| s.replacen("per = \"24h\"", "per = \"1 day\"", 1));
    assert_has(&msg, &["rules[0].cap.per", "\"1 day\"", "duration"]);
}

#[test]
fn unknown_tally_lists_the_tallies() {
    let msg = error_of(|s| s.replacen("since = \"activity\"", "since = \"activty\"", 1));
    assert_has(&msg, &["segments[5].when[0].since", "\"activty\" is not a tally", "activity, email-sends"]);
}

#[test]
fn unknown_kind_lists_the_kinds() {
    let msg = error_of(|s| s.replacen("on = \"form_submit\"", "on = \"form\"", 1));
    assert_has(&msg, &["rules[5].on", "\"form\" is not an event kind", "page_view"]);
}

#[test]
fn numeric_test_on_text_field_is_refused() {
    let msg = error_of(|s| s.replacen("{ field = \"industry\", one_of", "{ field = \"industry\", gte = 3, one_of", 1));
    assert_has(&msg, &["grade.criteria[6].when[0]", "expected one test"]);
    let msg = error_of(|s| {
        s.replacen("{ field = \"company_size\", gte = 1000 }", "{ field = \"company_size\", contains = \"1000\" }", 1)
    });
    assert_has(&msg, &["grade.criteria[3].when[0].contains", "company_size is an integer", "numeric test"]);
}

#[test]
fn score_thresholds_are_in_cents() {
    let msg = error_of(|s| s.replacen("score = { lt = 31 }", "score = { lt = 30.555 }", 1));
    assert_has(&msg, &["segments[0].when[0].score.lt", "30.555", "two decimals"]);
}

#[test]
fn duplicate_names_are_refused() {
    let msg = error_of(|s| s.replacen("name = \"search\"", "name = \"download\"", 1));
    assert_has(&msg, &["rules[7].name", "\"download\" is used twice"]);
}

#[test]
fn letters_must_decrease() {
    let msg = error_of(|s| s.replacen("B = 60", "B = 90", 1));
    assert_has(&msg, &["grade.letters.B", "must be below the minimum of A"]);
}

#[test]
fn toml_syntax_errors_are_reported() {
    let msg = error_of(|s| s.replacen("[score]", "[score", 1));
    assert!(!msg.is_empty());
}

#[test]
fn durations_beyond_a_century_are_refused() {
    // Bounded durations are what keeps the core's time arithmetic in range.
    let e = error_of(|t| t.replacen("half_life = \"30d\"", "half_life = \"100000000w\"", 1));
    assert_has(&e, &["score.half_life", "100000000w", "at most 100 years"]);
}
