//! Text matching as the model needs it: case-insensitive substring, prefix and
//! whole-value tests, whole-word phrases, and e-mail domains.
//!
//! Needles are prepared once, when the model is built ([`Needle::new`]); the hot
//! path (a `contains` on every page view's url) then compares bytes without
//! allocating whenever the needle is ASCII.

/// A prepared piece of text to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct Needle {
    /// Lowercased unless the match is case-sensitive.
    text: Box<str>,
    case_sensitive: bool,
}

fn trimmed(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

impl Needle {
    pub fn new(text: &str, case_sensitive: bool) -> Needle {
        let text = if case_sensitive { text.into() } else { text.to_lowercase().into() };
        Needle { text, case_sensitive }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Case-folds `hay` the way the needle was folded; borrowed when nothing changes.
    fn fold<'a>(&self, hay: &'a str) -> std::borrow::Cow<'a, str> {
        if self.case_sensitive || !hay.chars().any(char::is_uppercase) {
            std::borrow::Cow::Borrowed(hay)
        } else {
            std::borrow::Cow::Owned(hay.to_lowercase())
        }
    }

    /// `hay` contains the needle anywhere.
    pub fn found_in(&self, hay: &str) -> bool {
        if self.case_sensitive {
            return hay.contains(&*self.text);
        }
        if self.text.is_ascii() {
            return ascii_icase_find(hay.as_bytes(), self.text.as_bytes());
        }
        self.fold(hay).contains(&*self.text)
    }

    /// `hay` starts with the needle (surrounding spaces ignored).
    pub fn prefix_of(&self, hay: &str) -> bool {
        let hay = trimmed(hay);
        if !self.case_sensitive && self.text.is_ascii() {
            let (h, n) = (hay.as_bytes(), self.text.as_bytes());
            return h.len() >= n.len() && h[..n.len()].eq_ignore_ascii_case(n);
        }
        self.fold(hay).starts_with(&*self.text)
    }

    /// `hay` is the needle as a whole value (surrounding spaces ignored).
    pub fn equals(&self, hay: &str) -> bool {
        let hay = trimmed(hay);
        if self.case_sensitive {
            return hay == trimmed(&self.text);
        }
        if self.text.is_ascii() && hay.is_ascii() {
            return hay.eq_ignore_ascii_case(trimmed(&self.text));
        }
        self.fold(hay) == trimmed(&self.text)
    }
}

/// Case-insensitive (ASCII) substring search without allocating. Correct for any
/// UTF-8 haystack because an ASCII needle can only match ASCII bytes.
fn ascii_icase_find(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let first_up = first.to_ascii_uppercase();
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        let c = hay[i];
        if (c == first || c == first_up) && hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        i += 1;
    }
    false
}

/// Splits text into words: runs of letters and digits, lowercased unless
/// `case_sensitive`.
pub fn words(text: &str, case_sensitive: bool) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| if case_sensitive { w.to_string() } else { w.to_lowercase() })
        .collect()
}

/// A phrase of one or more whole words, matched as consecutive words.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub words: Vec<String>,
}

impl Phrase {
    pub fn new(text: &str, case_sensitive: bool) -> Phrase {
        Phrase { words: words(text, case_sensitive) }
    }

    /// Whether the phrase occurs in the already-split `hay` words.
    pub fn found_in(&self, hay: &[String]) -> bool {
        !self.words.is_empty() && hay.windows(self.words.len()).any(|w| w == self.words.as_slice())
    }
}

/// The domain of an e-mail address: what follows the last `@`, trimmed.
pub fn email_domain(email: &str) -> Option<&str> {
    let (_, domain) = trimmed(email).rsplit_once('@')?;
    let domain = trimmed(domain);
    (!domain.is_empty()).then_some(domain)
}

/// Compares two e-mail addresses as the bounce segments require: ignoring case
/// and surrounding spaces.
pub fn same_email(a: &str, b: &str) -> bool {
    let (a, b) = (trimmed(a), trimmed(b));
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contains_ignores_case() {
        let n = Needle::new("/Pricing", false);
        assert!(n.found_in("https://x.com/PRICING/plans"));
        assert!(n.found_in("https://x.com/pricing"));
        assert!(!n.found_in("https://x.com/price"));
        assert!(Needle::new("analytics", false).found_in("Ünïcode ANALYTICS"));
        assert!(Needle::new("ÜBER", false).found_in("das über"));
        assert!(!Needle::new("Pricing", true).found_in("/pricing"));
    }

    #[test]
    fn whole_values_ignore_spaces_and_case() {
        let n = Needle::new("Financial Services", false);
        assert!(n.equals("  financial services "));
        assert!(!n.equals("financial services inc"));
        assert!(Needle::new("gm", false).prefix_of(" GMX"));
    }

    #[test]
    fn words_as_the_seed_model_defines_them() {
        let exec = ["vp", "vice president", "head of"].map(|p| Phrase::new(p, false));
        let hit = |title: &str| {
            let w = words(title, false);
            exec.iter().any(|p| p.found_in(&w))
        };
        assert!(hit("VP of Sales"));
        assert!(hit("Head of Marketing"));
        assert!(hit("Vice-President, EMEA"));
        assert!(!hit("MVP"));
        assert!(!hit("Head Chef of"));
        assert!(!hit("Internal Auditor"));
    }

    #[test]
    fn email_domains() {
        assert_eq!(email_domain(" Ann@Gmail.com "), Some("Gmail.com"));
        assert_eq!(email_domain("a@b@corp.io"), Some("corp.io"));
        assert_eq!(email_domain("nobody"), None);
        assert_eq!(email_domain("x@"), None);
        assert!(same_email(" A@B.com", "a@b.COM "));
        assert!(!same_email("a@b.com", "a@c.com"));
    }

    proptest! {
        #[test]
        fn ascii_search_agrees_with_lowercase_search(hay in "[a-zA-Z/é.]{0,20}", needle in "[a-zA-Z/]{0,4}") {
            let expected = hay.to_lowercase().contains(&needle.to_lowercase());
            prop_assert_eq!(Needle::new(&needle, false).found_in(&hay), expected);
        }
    }
}
