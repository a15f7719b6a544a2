//! Input events: the kinds of docs/events.md, their typed properties, and the
//! profile patch carried by `profile_update`.
//!
//! Events arrive already validated (the codec names any bad field); here they are
//! plain typed data. Properties are looked up by [`Field`] so that a model can
//! test any of them generically.

use crate::ids::{EventId, LeadId};
use crate::time::Millis;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in events, models and outputs.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Looks a value up by its exact name.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// The kind of an input event (`type` in the JSON contract).
    Kind {
        PageView = "page_view",
        EmailSend = "email_send",
        EmailOpen = "email_open",
        EmailClick = "email_click",
        Download = "download",
        FormSubmit = "form_submit",
        Search = "search",
        Webinar = "webinar",
        EmailBounce = "email_bounce",
        Unsubscribe = "unsubscribe",
        ProfileUpdate = "profile_update",
        OpportunityUpdate = "opportunity_update",
        Erase = "erase",
    }
}

named_enum! {
    /// A property an event or a profile can carry.
    Field {
        Url = "url",
        Title = "title",
        DurationMs = "duration_ms",
        Referrer = "referrer",
        Campaign = "campaign",
        LinkUrl = "link_url",
        Asset = "asset",
        AssetType = "asset_type",
        Form = "form",
        Term = "term",
        Webinar = "webinar",
        Attended = "attended",
        BounceType = "bounce_type",
        Reason = "reason",
        List = "list",
        OpportunityId = "opportunity_id",
        Stage = "stage",
        Amount = "amount",
        Email = "email",
        JobTitle = "job_title",
        Company = "company",
        CompanySize = "company_size",
        Industry = "industry",
        Country = "country",
        Region = "region",
        AnnualRevenue = "annual_revenue",
        Technologies = "technologies",
        LifecycleStage = "lifecycle_stage",
        SalesRep = "sales_rep",
    }
}

named_enum! {
    /// Hard or soft, as carried by `email_bounce`.
    BounceType { Hard = "hard", Soft = "soft" }
}

named_enum! {
    /// An opportunity's stage, as carried by `opportunity_update`.
    Stage { Open = "open", ClosedWon = "closed_won", ClosedLost = "closed_lost" }
}

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Integer,
    Number,
    Boolean,
    TextList,
}

impl FieldType {
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::Text => "a string",
            FieldType::Integer => "an integer",
            FieldType::Number => "a number",
            FieldType::Boolean => "a boolean",
            FieldType::TextList => "an array of strings",
        }
    }
}

impl Field {
    /// The type every occurrence of this field must have.
    pub fn field_type(self) -> FieldType {
        match self {
            Field::DurationMs | Field::CompanySize => FieldType::Integer,
            Field::Amount | Field::AnnualRevenue => FieldType::Number,
            Field::Attended => FieldType::Boolean,
            Field::Technologies => FieldType::TextList,
            _ => FieldType::Text,
        }
    }

    /// Whether this is one of the profile fields kept per lead (and graded).
    #[inline]
    pub fn is_profile(self) -> bool {
        // The profile fields are declared last, from Email on.
        self as u8 >= Field::Email as u8
    }
}

/// The fields of a lead's profile, set by `profile_update`.
pub const PROFILE_FIELDS: &[Field] = &[
    Field::Email,
    Field::JobTitle,
    Field::Company,
    Field::CompanySize,
    Field::Industry,
    Field::Country,
    Field::Region,
    Field::AnnualRevenue,
    Field::Technologies,
    Field::LifecycleStage,
    Field::SalesRep,
];

impl Kind {
    /// The properties of this kind: `(field, required)`.
    pub fn properties(self) -> &'static [(Field, bool)] {
        use Field::*;
        match self {
            Kind::PageView => &[(Url, true), (Title, false), (DurationMs, false), (Referrer, false)],
            Kind::EmailSend | Kind::EmailOpen => &[(Campaign, false)],
            Kind::EmailClick => &[(LinkUrl, true), (Campaign, false)],
            Kind::Download => &[(Asset, true), (AssetType, false)],
            Kind::FormSubmit => &[(Form, true)],
            Kind::Search => &[(Term, true)],
            Kind::Webinar => &[(Webinar, true), (Attended, false)],
            Kind::EmailBounce => &[(BounceType, true), (Reason, false)],
            Kind::Unsubscribe => &[(List, false)],
            Kind::ProfileUpdate => &[
                (Email, false),
                (JobTitle, false),
                (Company, false),
                (CompanySize, false),
                (Industry, false),
                (Country, false),
                (Region, false),
                (AnnualRevenue, false),
                (Technologies, false),
                (LifecycleStage, false),
                (SalesRep, false),
            ],
            Kind::OpportunityUpdate => &[(OpportunityId, true), (Stage, false), (Amount, false)],
            Kind::Erase => &[],
        }
    }

    /// Whether events of this kind have `field`.
    pub fn has_property(self, field: Field) -> bool {
        self.properties().iter().any(|(f, _)| *f == field)
    }

    /// A bit for [`KindSet`].
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of kinds, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindSet(pub u16);

impl KindSet {
    pub fn of(kinds: &[Kind]) -> KindSet {
        KindSet(kinds.iter().fold(0, |m, k| m | k.bit()))
    }
    pub fn contains(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.iter().copied().filter(move |k| self.contains(*k))
    }
}

/// A property value, borrowed from an event or a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Text(&'a str),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    TextList(&'a [Box<str>]),
}

impl Value<'_> {
    /// The value as a number, for numeric comparisons.
    pub fn as_number(&self) -> Option<f64> {
        match *self {
            Value::Integer(i) => Some(i as f64),
            Value::Number(n) => Some(n),
            _ => None,
        }
    }
}

/// An owned profile value.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Text(Box<str>),
    Integer(i64),
    Number(f64),
    TextList(Box<[Box<str>]>),
}

impl OwnedValue {
    pub fn borrow(&self) -> Value<'_> {
        match self {
            OwnedValue::Text(s) => Value::Text(s),
            OwnedValue::Integer(i) => Value::Integer(*i),
            OwnedValue::Number(n) => Value::Number(*n),
            OwnedValue::TextList(l) => Value::TextList(l),
        }
    }
}

/// The typed properties of one event. Only the fields of the event's kind are
/// ever set (the codec guarantees it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// Text properties of the event (a handful at most, so a vector beats a map).
    pub text: Vec<(Field, Box<str>)>,
    pub duration_ms: Option<i64>,
    pub attended: Option<bool>,
    pub bounce_type: Option<BounceType>,
    pub stage: Option<Stage>,
    pub amount: Option<f64>,
    /// For `profile_update`: each present key, `None` meaning `null` (delete).
    pub profile: Vec<(Field, Option<OwnedValue>)>,
}

impl Properties {
    /// Sets a text property (replacing an earlier value of the same field).
    pub fn set_text(&mut self, field: Field, value: impl Into<Box<str>>) {
        let value = value.into();
        match self.text.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = value,
            None => self.text.push((field, value)),
        }
    }

    /// Looks a property up. For `profile_update` events the profile patch is
    /// searched too (a deleted field reads as absent).
    pub fn get(&self, field: Field) -> Option<Value<'_>> {
        match field {
            Field::DurationMs => self.duration_ms.map(Value::Integer),
            Field::Attended => self.attended.map(Value::Boolean),
            Field::BounceType => self.bounce_type.map(|b| Value::Text(b.as_str())),
            Field::Stage => self.stage.map(|s| Value::Text(s.as_str())),
            Field::Amount => self.amount.map(Value::Number),
            f if f.is_profile() => {
                self.profile.iter().find(|(pf, _)| *pf == f).and_then(|(_, v)| v.as_ref().map(OwnedValue::borrow))
            }
            f => self.text.iter().find(|(tf, _)| *tf == f).map(|(_, v)| Value::Text(v)),
        }
    }
}

/// One input event, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: EventId,
    pub lead_id: LeadId,
    pub kind: Kind,
    /// Event time, epoch milliseconds.
    pub timestamp: Millis,
    pub properties: Properties,
}

impl Event {
    /// A new event with no properties.
    pub fn new(event_id: impl Into<EventId>, lead_id: impl Into<LeadId>, kind: Kind, timestamp: Millis) -> Event {
        Event { event_id: event_id.into(), lead_id: lead_id.into(), kind, timestamp, properties: Properties::default() }
    }

    /// Hints the cache to fetch the list of the event's text properties
    /// (the first of two hints: the list says where the texts are).
    #[inline]
    pub fn prefetch_properties(&self) {
        let text = &self.properties.text;
        crate::prefetch::bytes(text.as_ptr(), std::mem::size_of_val(text.as_slice()), 4);
    }

    /// Hints the cache to fetch the event's texts, which rules match
    /// (after [`Event::prefetch_properties`] had time to bring the list).
    #[inline]
    pub fn prefetch_texts(&self) {
        for (_, t) in self.properties.text.iter().take(4) {
            crate::prefetch::bytes(t.as_ptr(), t.len(), 2);
        }
    }

    /// Whether this event counts as *activity* in the sense of docs/events.md.
    pub fn is_activity(&self) -> bool {
        match self.kind {
            Kind::PageView | Kind::EmailClick | Kind::Download | Kind::FormSubmit | Kind::Search => true,
            Kind::Webinar => self.properties.attended.unwrap_or(true),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Kind::parse("pageview"), None);
    }

    #[test]
    fn profile_patch_reads_as_properties() {
        let mut p = Properties::default();
        p.profile.push((Field::JobTitle, Some(OwnedValue::Text("CEO".into()))));
        p.profile.push((Field::Email, None));
        assert_eq!(p.get(Field::JobTitle), Some(Value::Text("CEO")));
        assert_eq!(p.get(Field::Email), None);
    }

    #[test]
    fn profile_fields_are_declared_last() {
        for f in Field::ALL {
            assert_eq!(f.is_profile(), PROFILE_FIELDS.contains(f), "{f}");
        }
    }

    #[test]
    fn kind_set() {
        let s = KindSet::of(&[Kind::PageView, Kind::Erase]);
        assert!(s.contains(Kind::PageView) && s.contains(Kind::Erase));
        assert!(!s.contains(Kind::Search));
        assert_eq!(s.iter().count(), 2);
    }
}
