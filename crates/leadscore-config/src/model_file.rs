//! The model file format, as serde structures. Every table denies unknown keys,
//! so a typo is an error that names the key rather than a silently ignored rule.
//! The meaning of each key is documented in `config/seed-model.toml`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One string or a list of strings (`on = "page_view"` or `on = ["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A string, number or boolean (for `equals`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub score: ScoreFile,
    #[serde(default)]
    pub dedup: DedupFile,
    #[serde(default)]
    pub windows: WindowsFile,
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    pub grade: GradeFile,
    #[serde(default)]
    pub tallies: Vec<TallyFile>,
    #[serde(default)]
    pub segments: Vec<SegmentFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreFile {
    #[serde(default)]
    pub min: f64,
    #[serde(default = "default_max")]
    pub max: f64,
    /// A duration such as `"30d"`, or `"none"`.
    pub half_life: String,
}

fn default_max() -> f64 {
    100.0
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupFile {
    pub remember_event_ids: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsFile {
    pub bucket: Option<String>,
}

/// A test on one field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTestFile {
    pub field: String,
    pub equals: Option<Scalar>,
    pub one_of: Option<Vec<String>>,
    pub contains: Option<OneOrMany>,
    pub prefix: Option<OneOrMany>,
    pub words: Option<Vec<String>>,
    pub domain_in: Option<Vec<String>>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    pub present: Option<bool>,
    #[serde(default)]
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub on: OneOrMany,
    #[serde(default)]
    pub when: Vec<FieldTestFile>,
    pub points: f64,
    pub escalate: Option<EscalateFile>,
    pub cap: Option<CapFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateFile {
    pub after: u32,
    pub points: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapFile {
    pub points: f64,
    pub per: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeFile {
    pub start: f64,
    /// Letter → minimum fit.
    pub letters: BTreeMap<String, f64>,
    pub lowest: String,
    #[serde(default)]
    pub criteria: Vec<CriterionFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub when: Vec<FieldTestFile>,
    #[serde(default)]
    pub unless: Vec<String>,
    pub fit: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatcherFile {
    pub on: OneOrMany,
    #[serde(default)]
    pub when: Vec<FieldTestFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TallyFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub events: Vec<MatcherFile>,
    #[serde(default = "default_measure")]
    pub measure: String,
    pub window: Option<String>,
    pub reset_on_change: Option<String>,
}

fn default_measure() -> String {
    "count".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Every condition must hold.
    pub when: Vec<CondFile>,
}

/// A segment condition: exactly one of the subject keys (`score`, `grade`,
/// `tally`, `since`, `below_peak`, `profile`, `criterion`, `opportunity_in`,
/// `opportunity_reached`, `all`, `any`, `not`) with its qualifiers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CondFile {
    pub score: Option<RangeFile>,
    pub grade: Option<Vec<String>>,
    pub tally: Option<String>,
    pub since: Option<String>,
    pub below_peak: Option<String>,
    pub profile: Option<FieldTestFile>,
    pub criterion: Option<String>,
    pub opportunity_in: Option<String>,
    pub opportunity_reached: Option<String>,
    pub all: Option<Vec<CondFile>>,
    pub any: Option<Vec<CondFile>>,
    pub not: Option<Box<CondFile>>,
    // qualifiers
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    pub at_least: Option<String>,
    pub less_than: Option<String>,
    pub by: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeFile {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}
