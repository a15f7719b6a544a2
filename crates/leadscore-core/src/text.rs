//! Text matching as the model needs it: case-insensitive substring, prefix and
//! whole-value tests, whole-word phrases, and e-mail domains; and the short
//! [`excerpt`] of an input value that an error message may quote.
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
    /// Where in `text` its rarest byte is (see [`rarest`]): the byte a
    /// case-insensitive search looks for first.
    anchor: usize,
}

fn trimmed(s: &str) -> &str {
    // Most values begin and end with a visible ASCII character, which no
    // whitespace is: those need no walk through characters.
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim_matches(char::is_whitespace),
    }
}

impl Needle {
    pub fn new(text: &str, case_sensitive: bool) -> Needle {
        let text: Box<str> = if case_sensitive { text.into() } else { text.to_lowercase().into() };
        let anchor = rarest(text.as_bytes());
        Needle { text, case_sensitive, anchor }
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
            return ascii_icase_find(hay.as_bytes(), self.text.as_bytes(), self.anchor);
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

/// Bytes common in the values needles look through (urls, titles,
/// campaign names), the most common first: the punctuation of urls and the
/// most frequent English letters. Any byte not listed counts as rarer.
const COMMON: &[u8] = b"/.etaoinsrhlcmpd:-_ufgwyb";

/// The position of the needle's rarest byte (ignoring case), the first of
/// equals: a search that looks for it meets fewer false candidates than one
/// that looks for the first byte (a '/' or an 'a', several times in a url).
fn rarest(needle: &[u8]) -> usize {
    let rarity = |b: &u8| COMMON.iter().position(|c| *c == b.to_ascii_lowercase()).unwrap_or(COMMON.len());
    // The last of equal maxima is kept: reversed, that is the first.
    needle.iter().enumerate().rev().max_by_key(|(_, b)| rarity(b)).map_or(0, |(i, _)| i)
}

/// Case-insensitive (ASCII) substring search without allocating. Correct for any
/// UTF-8 haystack because an ASCII needle can only match ASCII bytes.
///
/// Candidates are the places where the needle's byte at `anchor` (its
/// rarest, see [`rarest`]) may be, found eight bytes at a time: OR-ing 0x20
/// lowercases every ASCII letter (and maps some other bytes onto others,
/// which only adds candidates), then a zero-byte test on the XOR with the
/// byte marks where it may be. Each candidate is checked in full, so false
/// candidates cost a compare and never a wrong answer.
fn ascii_icase_find(hay: &[u8], needle: &[u8], anchor: usize) -> bool {
    let Some(&byte) = needle.get(anchor) else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let fold = if byte.is_ascii_alphabetic() { 0x20 } else { 0 };
    let want = byte | fold;
    // `at` is where the anchor byte would be; the needle starts `anchor` before.
    let found_at = |at: usize| {
        (hay[at] | fold) == want && hay[at - anchor..at - anchor + needle.len()].eq_ignore_ascii_case(needle)
    };
    // The anchor byte of a match lies in `anchor..=last`.
    let last = hay.len() - needle.len() + anchor;
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = anchor;
    while i + 8 <= last + 1 {
        let chunk = u64::from_le_bytes(hay[i..i + 8].try_into().expect("eight bytes"));
        let x = (chunk | (ONES * u64::from(fold))) ^ (ONES * u64::from(want));
        let mut maybe = x.wrapping_sub(ONES) & !x & HIGHS;
        while maybe != 0 {
            let at = i + maybe.trailing_zeros() as usize / 8;
            if found_at(at) {
                return true;
            }
            maybe &= maybe - 1;
        }
        i += 8;
    }
    (i..=last).any(found_at)
}

/// A value from the input quoted in an error message: at most 64 bytes of it
/// (error messages travel in dead-letter headers and logs, and a hostile value
/// may be most of a megabyte).
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

/// Splits text into words: runs of letters and digits, lowercased unless
/// `case_sensitive`.
pub fn words(text: &str, case_sensitive: bool) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| if case_sensitive { w.to_string() } else { w.to_lowercase() })
        .collect()
}

/// Whether one of `phrases` occurs in `hay` as consecutive whole words, each
/// word of `hay` lowercased: the same answer as [`Phrase::found_in`] on
/// `words(hay, false)` for each phrase, without allocating the words.
pub fn phrase_in(phrases: &[Phrase], hay: &str) -> bool {
    // The words are split once, as slices of `hay`, on the stack for any
    // value of a few words (a job title), on the heap past that.
    const ON_STACK: usize = 16;
    let mut stack = [""; ON_STACK];
    let mut heap = Vec::new();
    let mut n = 0;
    for w in hay.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if n < ON_STACK {
            stack[n] = w;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(w);
        }
        n += 1;
    }
    let words: &[&str] = if heap.is_empty() { &stack[..n] } else { &heap };
    phrases.iter().any(|p| {
        !p.words.is_empty()
            && words
                .windows(p.words.len())
                .any(|w| w.iter().zip(&p.words).all(|(word, want)| lowercases_to(word, want)))
    })
}

/// `word.to_lowercase() == lowered`, allocating only for a word that is not ASCII.
fn lowercases_to(word: &str, lowered: &str) -> bool {
    if word.is_ascii() {
        word.len() == lowered.len() && word.bytes().zip(lowered.bytes()).all(|(a, b)| a.to_ascii_lowercase() == b)
    } else {
        word.to_lowercase() == lowered
    }
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
    fn a_search_looks_for_the_rarest_byte_first() {
        assert_eq!(rarest(b"/pricing"), 7); // g
        assert_eq!(rarest(b"analytics"), 4); // y
        assert_eq!(rarest(b"/Blog"), 1); // b, whatever the case
        assert_eq!(rarest(b"e2e"), 1); // a digit: not listed
        assert_eq!(rarest(b"zqz"), 0); // none listed: the first
        assert_eq!(rarest(b""), 0);
    }

    #[test]
    fn values_are_trimmed_of_any_whitespace() {
        for (value, expected) in [
            ("", ""),
            ("a", "a"),
            (" a b ", "a b"),
            ("\u{a0}x\u{3000}", "x"),
            ("\tx", "x"),
            ("x\n", "x"),
            ("é", "é"),
            (" ", ""),
        ] {
            assert_eq!(trimmed(value), expected, "{value:?}");
        }
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
            let found = exec.iter().any(|p| p.found_in(&w));
            assert_eq!(phrase_in(&exec, title), found, "{title}");
            found
        };
        assert!(hit("VP of Sales"));
        assert!(hit("Head of Marketing"));
        assert!(hit("Vice-President, EMEA"));
        assert!(!hit("MVP"));
        assert!(!hit("Head Chef of"));
        assert!(!hit("Internal Auditor"));
    }

    #[test]
    fn excerpts_are_short_and_cut_on_a_character() {
        assert_eq!(excerpt("fax"), "\"fax\"");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert!(e.len() < 100 && e.ends_with("... (200 bytes)"), "{e}");
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
        fn ascii_search_agrees_with_lowercase_search(hay in "[a-zA-Z0-9/é.@`OoPpYy]{0,60}", needle in "[a-zA-Z0-9/@`]{0,6}") {
            let expected = hay.to_lowercase().contains(&needle.to_lowercase());
            prop_assert_eq!(Needle::new(&needle, false).found_in(&hay), expected);
        }

        #[test]
        fn a_needle_is_found_wherever_it_is(
            before in "[a-zA-Z0-9/é.@`]{0,30}",
            needle in "[a-zA-Z0-9/@`.]{1,9}",
            after in "[a-zA-Z0-9/é.@`]{0,30}",
        ) {
            let hay = format!("{before}{}{after}", needle.to_uppercase());
            prop_assert!(Needle::new(&needle, false).found_in(&hay));
        }

        #[test]
        fn phrases_match_as_on_split_words(
            hay in "([a-cA-CÉé]{1,2}[ ,-]{1,2}){0,24}",
            phrases in proptest::collection::vec("[a-cA-Cé]{0,2}( [a-cé]{1,2}){0,2}", 0..4),
            case_sensitive in any::<bool>(),
        ) {
            let phrases: Vec<Phrase> = phrases.iter().map(|p| Phrase::new(p, case_sensitive)).collect();
            let w = words(&hay, false);
            prop_assert_eq!(phrase_in(&phrases, &hay), phrases.iter().any(|p| p.found_in(&w)));
        }
    }
}
