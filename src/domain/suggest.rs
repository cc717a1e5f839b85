//! Candidate ConnectWise companies for a Sophos customer that has no mapping yet.
//!
//! The console shows these to an operator, who decides. Nothing here is ever
//! applied automatically: a wrong mapping bills the wrong company, so the ranking
//! is deliberately simple enough to explain in one sentence per suggestion
//! ([`Suggestion::why`]).
//!
//! Four kinds of match, best first ([`MatchKind`]):
//!
//! * **Exact**: the names are equal after trimming. Score [`EXACT_SCORE`].
//! * **Normalised**: the names are equal after [`normalise`] (case, accents,
//!   `&`/`and`, punctuation and spacing, trailing legal suffixes such as "Ltd").
//!   Score [`NORMALISED_SCORE`].
//! * **Close**: the normalised names are at most a fifth of their length apart in
//!   character edits (optimal string alignment distance: insertions, deletions,
//!   substitutions and swaps of neighbours), directly or with the words sorted.
//!   Similarity = 1 − edits ÷ length of the longer name, kept when at least
//!   [`CLOSE_THRESHOLD`]; score = similarity × [`CLOSE_WEIGHT`], so a close match
//!   always scores below a normalised one.
//! * **Partial**: not close, but one normalised name is how the other begins, in
//!   whole words ("kappa" and "kappa holdings group"): a customer is often known
//!   by the first word of its company's name. The shorter name needs at least
//!   [`PARTIAL_MIN_CHARS`] characters. Score = [`PARTIAL_WEIGHT`] × the shorter
//!   name's words ÷ the longer name's words, always below a close match.
//!
//! Within a kind, companies that are in use come first, then those with another
//! status (e.g. "Inactive"), then those in the recycle bin, so that a deleted
//! duplicate never hides the live company; ties go to the lower id so the output
//! is stable. Each company appears once, under its best kind.
//!
//! Edit distance rather than Jaro–Winkler: an edit count is something an operator
//! can check by eye ("1 edit apart"), and it is not generous to short names
//! ("acme" vs "acne"), where Jaro–Winkler scores near 0.9. It also gives exact,
//! cheap bounds (length difference, letter counts) to skip most candidates
//! before computing anything; see [`CompanyIndex`].

use std::collections::HashMap;

use serde::Serialize;

use crate::connectwise::model::Company;

/// Score of an [`MatchKind::Exact`] match.
pub const EXACT_SCORE: f64 = 1.0;
/// Score of a [`MatchKind::Normalised`] match: just below exact, because the
/// operator should still glance at the legal form.
pub const NORMALISED_SCORE: f64 = 0.95;
/// Lowest similarity (1 − edits ÷ longer length, on normalised names) that is
/// suggested as [`MatchKind::Close`]. 0.80 allows one edit per five characters:
/// a typo in a ten-letter name, two in a twelve-letter one, none in a name of
/// four letters or fewer (where one edit makes a different name).
pub const CLOSE_THRESHOLD: f64 = 0.80;
/// A [`MatchKind::Close`] match scores its similarity times this, so it is at
/// most 0.9 and always below [`NORMALISED_SCORE`].
pub const CLOSE_WEIGHT: f64 = 0.9;
/// A [`MatchKind::Partial`] match scores the share of the longer name's words
/// that the shorter name covers times this: below 0.5, so below any close match.
pub const PARTIAL_WEIGHT: f64 = 0.5;
/// The shortest (normalised) name a [`MatchKind::Partial`] match starts from:
/// shorter ones ("ab") begin too many names to mean anything.
pub const PARTIAL_MIN_CHARS: usize = 3;

/// Legal-form suffixes that [`normalise`] removes from the end of a name,
/// repeatedly ("Acme Pty. Ltd." → "acme"), in normalised spelling: lower case,
/// without dots, so "L.L.C." is "llc" and "S.A." is "sa". Entries with a space
/// are sequences of words ("& Co" is "and co"). Only trailing words are
/// removed; "Co" inside "Co Operative Bank" stays.
pub const LEGAL_SUFFIXES: &[&str] = &[
    // English-speaking countries
    "ltd",
    "limited",
    "inc",
    "incorporated",
    "llc",
    "llp",
    "lp",
    "plc",
    "corp",
    "corporation",
    "co",
    "company",
    "and co",
    "and company",
    "pty",
    "pte",
    // German-speaking countries
    "gmbh",
    "ag",
    "kg",
    // French, Spanish, Italian, Portuguese
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "sl",
    // Benelux
    "bv",
    "nv",
    // Nordic and Baltic
    "ab",
    "aps",
    "oy",
    "oyj",
    "ou",
    // Central Europe
    "kft",
    "sro",
    "sp z oo",
];

/// A ConnectWise company that a customer could be mapped to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompanyCandidate {
    pub id: i64,
    pub identifier: String,
    pub name: String,
    /// ConnectWise's company status name, e.g. "Active", "Inactive",
    /// "Not-Approved"; `None` when ConnectWise did not say.
    pub status: Option<String>,
    /// In ConnectWise's recycle bin.
    pub deleted: bool,
}

impl CompanyCandidate {
    /// Not in the recycle bin, and status "Active" (any case) or not given.
    /// A missing status counts as active, as the sync itself only looks at the
    /// recycle bin.
    pub fn is_active(&self) -> bool {
        !self.deleted && self.status.as_deref().is_none_or(is_active_status)
    }

    /// 0 active, 1 another status, 2 in the recycle bin: the order within a kind.
    fn standing(&self) -> u8 {
        if self.deleted {
            2
        } else if self.is_active() {
            0
        } else {
            1
        }
    }
}

impl From<&Company> for CompanyCandidate {
    fn from(c: &Company) -> Self {
        Self {
            id: c.id,
            identifier: c.identifier.clone(),
            name: c.name.clone(),
            status: c.status.as_ref().and_then(|s| s.name.clone()),
            deleted: c.deleted_flag == Some(true),
        }
    }
}

/// How a suggestion matched; the order of the variants is the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    Exact,
    Normalised,
    Close,
    Partial,
}

/// One suggested company.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// The company as given, unchanged (names are not escaped here: that is the
    /// template's job).
    pub company: CompanyCandidate,
    pub kind: MatchKind,
    /// 0..=1; see [`EXACT_SCORE`], [`NORMALISED_SCORE`] and [`CLOSE_WEIGHT`].
    /// The list is ordered by kind, then standing (active first), then score, so
    /// an active close match may precede a deleted one with a higher score.
    pub score: f64,
    /// One sentence for the operator, e.g. `same name after removing the legal
    /// suffix "Ltd"; in the recycle bin`. Quotes parts of the names, so it must
    /// be escaped like any other text.
    pub why: String,
}

/// Normalises a company or customer name for comparison.
///
/// Steps, in order:
/// 1. trim, and lower-case (Unicode);
/// 2. fold common accented Latin letters to their base letters (é → e, ü → u,
///    ß → ss, ø → o, ł → l, …; Latin-1 and Latin Extended-A), and drop combining
///    accents, so "Müller" and "Muller" compare equal; other scripts are kept;
/// 3. read `&` as the word "and";
/// 4. drop dots and apostrophes inside words ("L.L.C." → "llc", "O'Neil" →
///    "oneil"); any other character that is not a letter or digit separates
///    words; words are joined by single spaces;
/// 5. remove trailing [`LEGAL_SUFFIXES`] repeatedly ("Acme Pty. Ltd." → "acme",
///    "Müller GmbH & Co. KG" → "muller").
///
/// A name that is only a legal form ("Ltd") normalises to the empty string;
/// such names are matched only exactly.
///
/// ```
/// use sophos_cw_sync::domain::suggest::normalise;
/// assert_eq!(normalise("  Smith & Sons, Inc. "), "smith and sons");
/// assert_eq!(normalise("Müller GmbH"), "muller");
/// assert_eq!(normalise("Ltd"), "");
/// ```
pub fn normalise(name: &str) -> String {
    normalise_with(name, Steps::ALL).text
}

/// Candidates with their normalised names computed once, for suggesting many
/// customers against the same (possibly large) list of companies.
///
/// Exact and normalised matches are hash lookups. Close matches need a scan,
/// but each candidate is first checked against two lower bounds of the edit
/// distance that cost no more than a comparison of 32 bytes: the difference in
/// length, and half the difference in letter counts (a histogram of 32
/// buckets). Only candidates that pass both are compared character by
/// character. Both are true lower bounds, so they never hide a match.
#[derive(Debug, Clone)]
pub struct CompanyIndex {
    companies: Vec<CompanyCandidate>,
    keys: Vec<Key>,
    /// Normalised name (including the empty one) → positions in `companies`.
    by_key: HashMap<String, Vec<usize>>,
}

impl CompanyIndex {
    pub fn new(companies: Vec<CompanyCandidate>) -> Self {
        let keys: Vec<Key> = companies.iter().map(|c| Key::new(&c.name)).collect();
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            by_key.entry(key.text.clone()).or_default().push(i);
        }
        Self {
            companies,
            keys,
            by_key,
        }
    }

    pub fn companies(&self) -> &[CompanyCandidate] {
        &self.companies
    }

    pub fn len(&self) -> usize {
        self.companies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.companies.is_empty()
    }

    /// At most `max` suggestions for the customer named `customer_name`, best
    /// first (see the module documentation for the order). An empty or blank
    /// name gives none.
    pub fn suggest(&self, customer_name: &str, max: usize) -> Vec<Suggestion> {
        let trimmed = customer_name.trim();
        if trimmed.is_empty() || max == 0 {
            return Vec::new();
        }
        let probe = Key::new(trimmed);
        let mut hits: Vec<Hit> = Vec::new();
        if let Some(group) = self.by_key.get(&probe.text) {
            for &i in group {
                if self.companies[i].name.trim() == trimmed {
                    hits.push(Hit::new(i, MatchKind::Exact, EXACT_SCORE, None));
                } else if !probe.text.is_empty() {
                    hits.push(Hit::new(i, MatchKind::Normalised, NORMALISED_SCORE, None));
                }
            }
        }
        if !probe.text.is_empty() {
            for (i, key) in self.keys.iter().enumerate() {
                if key.text.is_empty() || key.text == probe.text {
                    continue; // nothing to compare, or already matched above
                }
                if let Some(close) = close(&probe, key) {
                    let score = close.similarity * CLOSE_WEIGHT;
                    hits.push(Hit::new(i, MatchKind::Close, score, Some(close)));
                } else if let Some(words) = partial(&probe.text, &key.text) {
                    let score = PARTIAL_WEIGHT * words.short as f64 / words.long as f64;
                    hits.push(Hit::new(i, MatchKind::Partial, score, None));
                }
            }
        }
        hits.sort_by(|a, b| {
            let (ca, cb) = (&self.companies[a.index], &self.companies[b.index]);
            a.kind
                .cmp(&b.kind)
                .then(ca.standing().cmp(&cb.standing()))
                .then(b.score.total_cmp(&a.score))
                .then(ca.id.cmp(&cb.id))
        });
        hits.truncate(max);
        hits.into_iter()
            .map(|hit| {
                let company = &self.companies[hit.index];
                let why = why(trimmed, &probe, company, &self.keys[hit.index], &hit);
                Suggestion {
                    company: company.clone(),
                    kind: hit.kind,
                    score: hit.score,
                    why,
                }
            })
            .collect()
    }
}

/// [`CompanyIndex::suggest`] for a single customer. Builds the index each time,
/// so for a page of customers build one [`CompanyIndex`] and reuse it.
pub fn suggest(customer_name: &str, companies: &[CompanyCandidate], max: usize) -> Vec<Suggestion> {
    CompanyIndex::new(companies.to_vec()).suggest(customer_name, max)
}

// ---------------------------------------------------------------- matching

/// A normalised name with what the close comparison needs.
#[derive(Debug, Clone)]
struct Key {
    text: String,
    /// The words sorted, when that differs from `text` ("sons smith" for
    /// "smith sons"), so that a different word order is not counted as edits.
    sorted: Option<String>,
    /// Length of `text` in characters (the edit distance counts characters).
    chars: usize,
    histogram: [u8; 32],
}

impl Key {
    fn new(name: &str) -> Self {
        let text = normalise(name);
        let mut words: Vec<&str> = text.split(' ').collect();
        words.sort_unstable();
        let sorted = words.join(" ");
        let sorted = (sorted != text).then_some(sorted);
        Self {
            chars: text.chars().count(),
            histogram: histogram(&text),
            sorted,
            text,
        }
    }

    fn sorted(&self) -> &str {
        self.sorted.as_deref().unwrap_or(&self.text)
    }
}

/// Letter counts in 32 buckets (a–z, digits two to a bucket, everything else),
/// saturating. One edit changes the bucket counts by at most 2 in total (a
/// substitution moves one count; an insertion or deletion changes one; a swap
/// of neighbours none), so the edit distance is at least half the difference.
/// Shared buckets and saturation only shrink differences, so the bound holds.
fn histogram(text: &str) -> [u8; 32] {
    let mut h = [0u8; 32];
    for c in text.chars() {
        let bucket = match c {
            'a'..='z' => c as usize - 'a' as usize,
            '0'..='9' => 26 + (c as usize - '0' as usize) / 2,
            _ => 31,
        };
        h[bucket] = h[bucket].saturating_add(1);
    }
    h
}

fn histogram_difference(a: &[u8; 32], b: &[u8; 32]) -> usize {
    a.iter()
        .zip(b)
        .map(|(x, y)| usize::from(x.abs_diff(*y)))
        .sum()
}

#[derive(Debug, Clone, Copy)]
struct Close {
    similarity: f64,
    edits: usize,
    /// The best alignment was with the words sorted.
    reordered: bool,
}

/// The close match of two non-empty, different normalised names, if any.
fn close(probe: &Key, key: &Key) -> Option<Close> {
    let longer = probe.chars.max(key.chars);
    // Most edits that can still reach the threshold; the slack only loosens the
    // filter, the decision below is on the similarity itself.
    let allowed = ((1.0 - CLOSE_THRESHOLD) * longer as f64 + 1e-9).floor() as usize;
    if probe.chars.abs_diff(key.chars) > allowed
        || histogram_difference(&probe.histogram, &key.histogram).div_ceil(2) > allowed
    {
        return None;
    }
    let direct = strsim::osa_distance(&probe.text, &key.text);
    let sorted = if probe.sorted.is_some() || key.sorted.is_some() {
        strsim::osa_distance(probe.sorted(), key.sorted())
    } else {
        direct
    };
    let edits = direct.min(sorted);
    let similarity = 1.0 - edits as f64 / longer as f64;
    (similarity >= CLOSE_THRESHOLD).then_some(Close {
        similarity,
        edits,
        reordered: sorted < direct,
    })
}

/// Word counts of a [`MatchKind::Partial`] match.
#[derive(Debug, Clone, Copy)]
struct PartialWords {
    short: usize,
    long: usize,
}

/// Whether one of two different non-empty normalised names is how the other
/// begins, in whole words, the shorter having at least [`PARTIAL_MIN_CHARS`]
/// characters.
fn partial(a: &str, b: &str) -> Option<PartialWords> {
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    if short.chars().count() < PARTIAL_MIN_CHARS {
        return None;
    }
    long.strip_prefix(short)?.strip_prefix(' ')?;
    Some(PartialWords {
        short: short.split(' ').count(),
        long: long.split(' ').count(),
    })
}

#[derive(Debug)]
struct Hit {
    index: usize,
    kind: MatchKind,
    score: f64,
    close: Option<Close>,
}

impl Hit {
    fn new(index: usize, kind: MatchKind, score: f64, close: Option<Close>) -> Self {
        Self {
            index,
            kind,
            score,
            close,
        }
    }
}

// ---------------------------------------------------------------- explanations

fn why(customer: &str, probe: &Key, company: &CompanyCandidate, key: &Key, hit: &Hit) -> String {
    let mut why = match (hit.kind, hit.close) {
        (MatchKind::Exact, _) => "same name".to_owned(),
        (MatchKind::Normalised, _) => normalised_why(customer, &company.name),
        (MatchKind::Close, Some(c)) if c.edits == 0 => format!(
            "same words in a different order ({} and {} after normalising)",
            quoted(&probe.text),
            quoted(&key.text)
        ),
        (MatchKind::Close, Some(c)) => format!(
            "similar name: {} and {} are {} edit{} apart after normalising{} ({}% alike)",
            quoted(&probe.text),
            quoted(&key.text),
            c.edits,
            if c.edits == 1 { "" } else { "s" },
            if c.reordered {
                " and sorting the words"
            } else {
                ""
            },
            (c.similarity * 100.0).floor()
        ),
        (MatchKind::Close, None) => "similar name".to_owned(),
        (MatchKind::Partial, _) => {
            let (short, long) = if probe.text.len() < key.text.len() {
                (&probe.text, &key.text)
            } else {
                (&key.text, &probe.text)
            };
            let words = short.split(' ').count();
            format!(
                "partial name: {} is the first {} of {} after normalising",
                quoted(short),
                if words == 1 {
                    "word".to_owned()
                } else {
                    format!("{words} words")
                },
                quoted(long)
            )
        }
    };
    if company.deleted {
        why.push_str("; in the recycle bin");
    }
    if let Some(status) = company.status.as_deref()
        && !is_active_status(status)
    {
        why.push_str(&format!("; status {}", quoted(status.trim())));
    }
    why
}

/// In double quotes, as written (not Rust-escaped: the operator reads this).
fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

fn is_active_status(status: &str) -> bool {
    status.trim().eq_ignore_ascii_case("active")
}

/// Names the fewest normalisation steps that make the two names equal (of the
/// 31 combinations, the smallest that works; among equals, the one listed
/// first), so that the sentence says what actually differs: "Acme Ltd" and
/// "Acme Ltd." differ only in punctuation, not in legal suffix.
fn normalised_why(customer: &str, company: &str) -> String {
    let mut masks: Vec<u8> = (1..32).collect();
    masks.sort_by_key(|m| (m.count_ones(), *m));
    let chosen = masks
        .into_iter()
        .map(Steps::from_mask)
        .find(|&steps| normalise_with(customer, steps).text == normalise_with(company, steps).text);
    let Some(steps) = chosen else {
        return "same name after normalising".to_owned();
    };
    let mut parts: Vec<String> = Vec::new();
    if steps.case {
        parts.push("ignoring case".to_owned());
    }
    if steps.accents {
        parts.push("ignoring accents".to_owned());
    }
    if steps.ampersand {
        parts.push("reading \"&\" as \"and\"".to_owned());
    }
    if steps.punctuation {
        parts.push("ignoring punctuation and spacing".to_owned());
    }
    if steps.suffixes {
        let mut suffixes: Vec<&str> = Vec::new();
        for name in [customer, company] {
            if let Some(s) = normalise_with(name, steps).suffix
                && !suffixes.contains(&s)
            {
                suffixes.push(s);
            }
        }
        let suffixes: Vec<String> = suffixes.into_iter().map(quoted).collect();
        parts.push(match suffixes.len() {
            1 => format!("removing the legal suffix {}", suffixes[0]),
            _ => format!("removing the legal suffixes {}", join_list(&suffixes)),
        });
    }
    format!("same name after {}", join_list(&parts))
}

/// "a", "a and b", "a, b and c".
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

// ---------------------------------------------------------------- normalisation

/// Which normalisation steps to apply. [`normalise`] applies all of them; the
/// explanation looks for the fewest that suffice.
#[derive(Debug, Clone, Copy)]
struct Steps {
    case: bool,
    accents: bool,
    ampersand: bool,
    /// Punctuation and spacing.
    punctuation: bool,
    suffixes: bool,
}

impl Steps {
    const ALL: Steps = Steps::from_mask(0b1_1111);

    /// Bits, lowest first: case, accents, ampersand, punctuation, suffixes.
    const fn from_mask(mask: u8) -> Steps {
        Steps {
            case: mask & 1 != 0,
            accents: mask & 2 != 0,
            ampersand: mask & 4 != 0,
            punctuation: mask & 8 != 0,
            suffixes: mask & 16 != 0,
        }
    }
}

struct Normalised<'a> {
    text: String,
    /// The removed legal suffixes as written in the name, e.g. "Pty. Ltd.".
    suffix: Option<&'a str>,
}

/// A word of the name: its byte span in the (trimmed) name and its text after
/// the case, accent and `&` steps.
struct Token {
    start: usize,
    end: usize,
    text: String,
}

fn normalise_with(name: &str, steps: Steps) -> Normalised<'_> {
    let name = name.trim();
    let tokens = tokenize(name, steps);
    let kept = if steps.suffixes {
        without_suffixes(&tokens)
    } else {
        tokens.len()
    };
    let suffix = tokens
        .get(kept)
        .zip(tokens.last())
        .map(|(first, last)| &name[first.start..last.end]);
    let mut text = String::with_capacity(name.len());
    let mut previous_end = 0;
    for (i, token) in tokens[..kept].iter().enumerate() {
        if i > 0 {
            if steps.punctuation {
                text.push(' ');
            } else {
                // Without the punctuation step, spacing is kept as written.
                text.push_str(&name[previous_end..token.start]);
            }
        }
        text.push_str(&token.text);
        previous_end = token.end;
    }
    Normalised { text, suffix }
}

fn tokenize(name: &str, steps: Steps) -> Vec<Token> {
    enum Class {
        /// Part of a word.
        Content,
        /// Dropped, but does not split the word (dots, apostrophes, accents).
        Skip,
        /// Between words.
        Separator,
        /// `&`, read as "and".
        And,
    }
    let mut tokens = Vec::new();
    let mut current: Option<Token> = None;
    for (start, c) in name.char_indices() {
        let end = start + c.len_utf8();
        let class = if c.is_whitespace() {
            Class::Separator
        } else if steps.ampersand && c == '&' {
            Class::And
        } else if steps.accents && is_combining_accent(c) {
            Class::Skip
        } else if !steps.punctuation || c.is_alphanumeric() || is_combining_accent(c) {
            Class::Content
        } else if matches!(c, '.' | '\'' | '\u{2018}' | '\u{2019}') {
            Class::Skip
        } else {
            Class::Separator
        };
        match class {
            Class::Separator => tokens.extend(current.take()),
            Class::And if steps.punctuation => {
                tokens.extend(current.take());
                tokens.push(Token {
                    start,
                    end,
                    text: "and".to_owned(),
                });
            }
            Class::And => {
                let token = current.get_or_insert_with(|| Token {
                    start,
                    end,
                    text: String::new(),
                });
                token.end = end;
                token.text.push_str("and");
            }
            Class::Skip => {
                if let Some(token) = current.as_mut() {
                    token.end = end;
                }
            }
            Class::Content => {
                let token = current.get_or_insert_with(|| Token {
                    start,
                    end,
                    text: String::new(),
                });
                token.end = end;
                push_char(&mut token.text, c, steps);
            }
        }
    }
    tokens.extend(current);
    tokens
}

/// How many leading tokens remain once trailing legal suffixes are removed,
/// longest suffix first ("& Co" as a whole, not just "Co").
fn without_suffixes(tokens: &[Token]) -> usize {
    // Compared in the normalised spelling whatever the other steps, so that
    // switching off e.g. the case step does not also switch off this one.
    let keys: Vec<String> = tokens.iter().map(|t| suffix_key(&t.text)).collect();
    let mut kept = keys.len();
    loop {
        let longest = LEGAL_SUFFIXES
            .iter()
            .filter_map(|suffix| {
                let words = suffix.split(' ').count();
                let tail = keys[..kept].get(kept.checked_sub(words)?..)?;
                tail.iter()
                    .map(String::as_str)
                    .eq(suffix.split(' '))
                    .then_some(words)
            })
            .max();
        match longest {
            Some(words) => kept -= words,
            None => return kept,
        }
    }
}

fn suffix_key(text: &str) -> String {
    let mut key = String::with_capacity(text.len());
    for c in text.chars() {
        for lower in c.to_lowercase() {
            push_folded(&mut key, lower, true);
        }
    }
    key.retain(char::is_alphanumeric);
    key
}

fn push_char(out: &mut String, c: char, steps: Steps) {
    if steps.case {
        for lower in c.to_lowercase() {
            push_folded(out, lower, steps.accents);
        }
    } else {
        push_folded(out, c, steps.accents);
    }
}

/// Pushes `c`, folded to its base letter(s) when `accents`, keeping its case.
fn push_folded(out: &mut String, c: char, accents: bool) {
    if accents {
        if is_combining_accent(c) {
            return; // e.g. from lower-casing "İ"
        }
        if let Some(base) = fold_lower(c) {
            out.push_str(base);
            return;
        }
        if c.is_uppercase() {
            let mut lower = c.to_lowercase();
            if let (Some(l), None) = (lower.next(), lower.next())
                && let Some(base) = fold_lower(l)
            {
                out.extend(base.chars().map(|b| b.to_ascii_uppercase()));
                return;
            }
        }
    }
    out.push(c);
}

/// Combining diacritical marks (U+0300–U+036F), as in a decomposed "é".
fn is_combining_accent(c: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&c)
}

/// Base letters of the accented lower-case Latin letters of Latin-1 and Latin
/// Extended-A (plus Romanian ș and ț). A table rather than Unicode
/// decomposition: no dependency, and it also covers letters that do not
/// decompose (ø, ł, đ, ß, æ).
fn fold_lower(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company(id: i64, name: &str) -> CompanyCandidate {
        CompanyCandidate {
            id,
            identifier: format!("C{id}"),
            name: name.to_owned(),
            status: Some("Active".to_owned()),
            deleted: false,
        }
    }

    fn deleted(mut c: CompanyCandidate) -> CompanyCandidate {
        c.deleted = true;
        c
    }

    fn with_status(mut c: CompanyCandidate, status: Option<&str>) -> CompanyCandidate {
        c.status = status.map(str::to_owned);
        c
    }

    fn ids(suggestions: &[Suggestion]) -> Vec<i64> {
        suggestions.iter().map(|s| s.company.id).collect()
    }

    fn kinds(suggestions: &[Suggestion]) -> Vec<MatchKind> {
        suggestions.iter().map(|s| s.kind).collect()
    }

    // ------------------------------------------------------------ normalise

    #[test]
    fn normalise_folds_case_accents_ampersand_and_punctuation() {
        assert_eq!(normalise("  ACME   Widgets "), "acme widgets");
        assert_eq!(normalise("Café Crème"), "cafe creme");
        assert_eq!(normalise("Ærø Øst Straße"), "aero ost strasse");
        assert_eq!(normalise("Łódź Żywiec"), "lodz zywiec");
        // Decomposed accents (e + U+0301) fold like precomposed ones.
        assert_eq!(normalise("Cafe\u{301}"), "cafe");
        assert_eq!(normalise("Smith&Jones"), "smith and jones");
        assert_eq!(normalise("  Smith & Sons, Inc. "), "smith and sons");
        assert_eq!(normalise("O'Neil-Jones (UK)"), "oneil jones uk");
        assert_eq!(normalise("A.B.C. Holdings"), "abc holdings");
        // Other scripts are kept (lower-cased where they have case).
        assert_eq!(normalise("東京 Трейд"), "東京 трейд");
    }

    #[test]
    fn normalise_removes_trailing_legal_suffixes_repeatedly() {
        assert_eq!(normalise("Acme Pty. Ltd."), "acme");
        assert_eq!(normalise("Acme Pty Ltd"), "acme");
        assert_eq!(normalise("Acme, L.L.C."), "acme");
        assert_eq!(normalise("Acme S.A."), "acme");
        assert_eq!(normalise("Acme B.V."), "acme");
        assert_eq!(normalise("Acme Corporation"), "acme");
        assert_eq!(normalise("Acme Co. Ltd"), "acme");
        assert_eq!(normalise("Müller GmbH & Co. KG"), "muller");
        assert_eq!(normalise("Smith & Co"), "smith");
        assert_eq!(normalise("Kala OÜ"), "kala");
        assert_eq!(normalise("Firma Sp. z o.o."), "firma");
        // Only trailing words: "co" and "inc" inside the name stay.
        assert_eq!(normalise("Co Operative Bank plc"), "co operative bank");
        assert_eq!(normalise("Inc Design Studio"), "inc design studio");
        // Not legal forms.
        assert_eq!(normalise("Acme Holdings Group"), "acme holdings group");
    }

    #[test]
    fn a_name_that_is_only_a_legal_form_normalises_to_empty() {
        assert_eq!(normalise("Ltd"), "");
        assert_eq!(normalise("Pty. Ltd."), "");
        assert_eq!(normalise(" -- "), "");
        assert_eq!(normalise(""), "");
    }

    // ------------------------------------------------------------ ranking

    #[test]
    fn exact_beats_normalised_beats_close() {
        let companies = [
            company(1, "Acme Widget"),      // close: one edit
            company(2, "ACME Widgets Ltd"), // normalised
            company(3, "Acme Widgets"),     // exact
        ];
        let got = suggest("Acme Widgets", &companies, 10);
        assert_eq!(ids(&got), [3, 2, 1]);
        assert_eq!(
            kinds(&got),
            [MatchKind::Exact, MatchKind::Normalised, MatchKind::Close]
        );
        assert_eq!(got[0].score, EXACT_SCORE);
        assert_eq!(got[1].score, NORMALISED_SCORE);
        // "acme widgets" vs "acme widget": 1 edit in 12 characters.
        let expected = (1.0 - 1.0 / 12.0) * CLOSE_WEIGHT;
        assert!((got[2].score - expected).abs() < 1e-12, "{}", got[2].score);
        assert!(got[2].score < got[1].score && got[1].score < got[0].score);
        assert_eq!(got[0].why, "same name");
        assert_eq!(
            got[1].why,
            "same name after ignoring case and removing the legal suffix \"Ltd\""
        );
        assert_eq!(
            got[2].why,
            "similar name: \"acme widgets\" and \"acme widget\" are 1 edit apart after \
             normalising (91% alike)"
        );
    }

    #[test]
    fn exact_is_case_sensitive_after_trimming() {
        let companies = [company(1, "  Acme  "), company(2, "ACME")];
        let got = suggest(" Acme", &companies, 10);
        assert_eq!(ids(&got), [1, 2]);
        assert_eq!(kinds(&got), [MatchKind::Exact, MatchKind::Normalised]);
        assert_eq!(got[1].why, "same name after ignoring case");
    }

    #[test]
    fn legal_suffixes_ltd_and_limited() {
        let got = suggest("Acme Ltd", &[company(7, "ACME Limited")], 10);
        assert_eq!(ids(&got), [7]);
        assert_eq!(got[0].kind, MatchKind::Normalised);
        assert_eq!(
            got[0].why,
            "same name after ignoring case and removing the legal suffixes \"Ltd\" and \
             \"Limited\""
        );
    }

    #[test]
    fn legal_suffix_and_accents() {
        let got = suggest("Müller GmbH", &[company(8, "Muller")], 10);
        assert_eq!(kinds(&got), [MatchKind::Normalised]);
        assert_eq!(
            got[0].why,
            "same name after ignoring accents and removing the legal suffix \"GmbH\""
        );
    }

    #[test]
    fn legal_suffix_ampersand_and_punctuation() {
        let got = suggest("Smith & Sons, Inc.", &[company(9, "Smith and Sons")], 10);
        assert_eq!(kinds(&got), [MatchKind::Normalised]);
        assert_eq!(
            got[0].why,
            "same name after reading \"&\" as \"and\", ignoring punctuation and spacing and \
             removing the legal suffix \"Inc.\""
        );
    }

    #[test]
    fn suffix_written_differently_is_not_called_a_removed_suffix() {
        let got = suggest("Acme Ltd", &[company(1, "Acme Ltd.")], 10);
        assert_eq!(kinds(&got), [MatchKind::Normalised]);
        assert_eq!(
            got[0].why,
            "same name after ignoring punctuation and spacing"
        );
    }

    #[test]
    fn recycle_bin_duplicate_comes_after_the_active_company_and_says_so() {
        // The deleted one has the lower id, so only the standing puts it second.
        let companies = [deleted(company(1, "Acme Ltd")), company(2, "Acme Ltd")];
        let got = suggest("Acme Ltd", &companies, 10);
        assert_eq!(ids(&got), [2, 1]);
        assert_eq!(kinds(&got), [MatchKind::Exact, MatchKind::Exact]);
        assert_eq!(got[0].why, "same name");
        assert_eq!(got[1].why, "same name; in the recycle bin");

        let got = suggest("Acme", &companies, 10);
        assert_eq!(ids(&got), [2, 1]);
        assert_eq!(
            got[0].why,
            "same name after removing the legal suffix \"Ltd\""
        );
        assert_eq!(
            got[1].why,
            "same name after removing the legal suffix \"Ltd\"; in the recycle bin"
        );
    }

    #[test]
    fn within_a_kind_active_then_other_status_then_recycle_bin_then_id() {
        let companies = [
            deleted(company(1, "Acme")),
            with_status(company(2, "Acme"), Some("Inactive")),
            with_status(company(3, "Acme"), Some("Not-Approved")),
            company(6, "Acme"),
            with_status(company(5, "Acme"), None),
            company(4, "Acme"),
        ];
        let got = suggest("Acme", &companies, 10);
        // Active (and unknown status) by id, then the other statuses by id,
        // then the recycle bin.
        assert_eq!(ids(&got), [4, 5, 6, 2, 3, 1]);
        assert_eq!(got[3].why, "same name; status \"Inactive\"");
        assert_eq!(got[4].why, "same name; status \"Not-Approved\"");
        assert_eq!(got[5].why, "same name; in the recycle bin");
        let deleted_inactive = with_status(deleted(company(1, "Acme")), Some("Inactive"));
        let got = suggest("Acme", &[deleted_inactive], 10);
        assert_eq!(
            got[0].why,
            "same name; in the recycle bin; status \"Inactive\""
        );
    }

    #[test]
    fn kind_outranks_standing() {
        let companies = [deleted(company(1, "Acme")), company(2, "ACME")];
        let got = suggest("Acme", &companies, 10);
        assert_eq!(ids(&got), [1, 2]);
        assert_eq!(kinds(&got), [MatchKind::Exact, MatchKind::Normalised]);
    }

    #[test]
    fn close_matches_are_ordered_by_standing_then_score() {
        let companies = [
            company(1, "Northwind Tradrs"),            // 1 edit
            company(2, "Nortwind Tradrs"),             // 2 edits
            deleted(company(3, "Northwind Traders.")), // normalised, deleted
            deleted(company(4, "Northwind Trader")),   // 1 edit, deleted
        ];
        let got = suggest("Northwind Traders", &companies, 10);
        assert_eq!(ids(&got), [3, 1, 2, 4]);
        assert_eq!(
            kinds(&got),
            [
                MatchKind::Normalised,
                MatchKind::Close,
                MatchKind::Close,
                MatchKind::Close
            ]
        );
        assert!(got[1].score > got[2].score);
        assert!(
            got[3].why.ends_with("; in the recycle bin"),
            "{}",
            got[3].why
        );
    }

    #[test]
    fn a_name_that_begins_the_other_in_whole_words_is_a_partial_match_after_close_ones() {
        let companies = [
            company(1, "Kappa Holdings Group"), // the customer's name, then 2 words
            company(2, "Kappas"),               // close: 1 edit in 6
            company(3, "Kappadocia Tours"),     // not whole words
            company(4, "The Kappa Group"),      // not how it begins
            company(5, "Kappa Group Ltd"),      // 1 of 2 words after the suffix
        ];
        let got = suggest("Kappa", &companies, 10);
        assert_eq!(ids(&got), [2, 5, 1]);
        assert_eq!(
            kinds(&got),
            [MatchKind::Close, MatchKind::Partial, MatchKind::Partial]
        );
        assert!((got[1].score - PARTIAL_WEIGHT / 2.0).abs() < 1e-12);
        assert!((got[2].score - PARTIAL_WEIGHT / 3.0).abs() < 1e-12);
        assert!(got[1].score < got[0].score);
        assert_eq!(
            got[2].why,
            "partial name: \"kappa\" is the first word of \"kappa holdings group\" after \
             normalising"
        );
        // Either way round: the company's name begins the customer's.
        let got = suggest("Acme Widgets Europe", &[company(1, "ACME Widgets")], 10);
        assert_eq!(kinds(&got), [MatchKind::Partial]);
        assert!(
            got[0].why.contains("the first 2 words of"),
            "{}",
            got[0].why
        );
        // Too short a name begins too much to mean anything.
        assert!(suggest("AB", &[company(1, "AB Foods")], 10).is_empty());
    }

    #[test]
    fn word_order_is_a_close_match() {
        let got = suggest("Sons Smith", &[company(1, "Smith Sons")], 10);
        assert_eq!(kinds(&got), [MatchKind::Close]);
        assert_eq!(got[0].score, CLOSE_WEIGHT);
        assert_eq!(
            got[0].why,
            "same words in a different order (\"sons smith\" and \"smith sons\" after \
             normalising)"
        );
        let got = suggest("Jones Smith Ltd", &[company(1, "Smith Jone")], 10);
        assert_eq!(kinds(&got), [MatchKind::Close]);
        assert!(
            got[0]
                .why
                .contains("1 edit apart after normalising and sorting the words"),
            "{}",
            got[0].why
        );
    }

    #[test]
    fn threshold_is_one_edit_per_five_characters() {
        // 10 characters: 2 edits is 0.80, kept; 3 edits is 0.70, not.
        let companies = [company(1, "abcdefghxx"), company(2, "abcdefgxxx")];
        let got = suggest("abcdefghij", &companies, 10);
        assert_eq!(ids(&got), [1]);
        assert!((got[0].score - 0.8 * CLOSE_WEIGHT).abs() < 1e-12);
        // Four letters: a single edit is already too far.
        assert!(suggest("Acme", &[company(1, "Acne")], 10).is_empty());
    }

    #[test]
    fn unrelated_names_give_nothing() {
        let companies = [
            company(1, "Contoso Ltd"),
            company(2, "Fabrikam, Inc."),
            company(3, "Adventure Works"),
            company(4, "Ltd"),
            company(5, ""),
        ];
        assert!(suggest("Northwind Traders", &companies, 10).is_empty());
        assert!(suggest("Tailspin Toys GmbH", &companies, 10).is_empty());
    }

    #[test]
    fn empty_or_blank_customer_name_gives_nothing() {
        let companies = [company(1, ""), company(2, "   "), company(3, "Acme")];
        assert!(suggest("", &companies, 10).is_empty());
        assert!(suggest(" \t\n", &companies, 10).is_empty());
    }

    #[test]
    fn name_that_normalises_to_empty_matches_only_exactly() {
        let companies = [
            company(1, "Ltd"),
            company(2, "LTD"),
            company(3, "Ltd."),
            company(4, "Limited"),
            company(5, "Lt"),
        ];
        let got = suggest("Ltd", &companies, 10);
        assert_eq!(ids(&got), [1]);
        assert_eq!(kinds(&got), [MatchKind::Exact]);
        // And such companies are not suggested for other names.
        assert!(suggest("Acme Ltd", &companies, 10).is_empty());
    }

    #[test]
    fn at_most_max_suggestions() {
        let companies: Vec<_> = (1..=5).map(|i| company(i, "Acme")).collect();
        assert_eq!(ids(&suggest("Acme", &companies, 3)), [1, 2, 3]);
        assert!(suggest("Acme", &companies, 0).is_empty());
    }

    #[test]
    fn hostile_names_pass_through_unchanged() {
        let script = "<script>alert('x')</script> Ltd";
        let attr = "\"><img src=x onerror=alert(1)> & Co";
        let companies = [company(1, script), company(2, attr)];
        let got = suggest("<script>alert('x')</script>", &companies, 10);
        assert_eq!(ids(&got), [1]);
        assert_eq!(got[0].kind, MatchKind::Normalised);
        assert_eq!(got[0].company.name, script);
        let got = suggest(attr, &companies, 10);
        assert_eq!(ids(&got), [2]);
        assert_eq!(got[0].kind, MatchKind::Exact);
        assert_eq!(got[0].company.name, attr);
        assert_eq!(got[0].company.identifier, "C2");
    }

    #[test]
    fn candidate_from_connectwise_company() {
        use crate::connectwise::model::Reference;
        let cw = Company {
            id: 42,
            identifier: "AcmeLtd".to_owned(),
            name: "Acme Ltd".to_owned(),
            deleted_flag: Some(true),
            status: Some(Reference {
                id: Some(2),
                identifier: None,
                name: Some("Inactive".to_owned()),
            }),
        };
        let c = CompanyCandidate::from(&cw);
        assert_eq!(
            c,
            CompanyCandidate {
                id: 42,
                identifier: "AcmeLtd".to_owned(),
                name: "Acme Ltd".to_owned(),
                status: Some("Inactive".to_owned()),
                deleted: true,
            }
        );
        assert!(!c.is_active());
        let live = Company {
            deleted_flag: None,
            status: None,
            ..cw
        };
        assert!(CompanyCandidate::from(&live).is_active());
    }

    // ------------------------------------------------------------ scale

    /// Deterministic pseudo-random numbers (no seed file, same every run).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % below as u64) as usize
        }
    }

    const SYLLABLES: &[&str] = &[
        "ac", "me", "nor", "th", "wind", "tra", "ders", "con", "to", "so", "fab", "ri", "kam",
        "ven", "tu", "re", "wor", "ks", "li", "tech", "sys", "data", "net", "soft", "lo", "gic",
    ];
    const FORMS: &[&str] = &[
        "", "", "", " Ltd", " Inc.", " GmbH", " Pty Ltd", " LLC", " & Co",
    ];

    fn generated_name(rng: &mut Lcg) -> String {
        let words = 1 + rng.next(3);
        let mut name = String::new();
        for w in 0..words {
            if w > 0 {
                name.push(' ');
            }
            let start = name.len();
            for _ in 0..1 + rng.next(3) {
                name.push_str(SYLLABLES[rng.next(SYLLABLES.len())]);
            }
            let first = name[start..start + 1].to_uppercase();
            name.replace_range(start..start + 1, &first);
        }
        name.push_str(FORMS[rng.next(FORMS.len())]);
        name
    }

    /// One random edit (substitution, insertion, deletion or swap).
    fn typo(rng: &mut Lcg, name: &str) -> String {
        let mut chars: Vec<char> = name.chars().collect();
        let at = rng.next(chars.len());
        let letter = (b'a' + rng.next(26) as u8) as char;
        match rng.next(4) {
            0 => chars[at] = letter,
            1 => chars.insert(at, letter),
            2 if chars.len() > 1 => {
                chars.remove(at);
            }
            _ if at + 1 < chars.len() => chars.swap(at, at + 1),
            _ => chars.push(letter),
        }
        chars.into_iter().collect()
    }

    /// The definitions applied to every candidate, with no index and no
    /// prefilter, to check that the index finds the same matches. `normalised`
    /// holds each company's normalised name, computed once for all customers.
    /// Also counts the close matches at the limit (one more edit and they would
    /// be below the threshold), which a prefilter that is too tight would drop.
    fn brute_force(
        customer: &str,
        companies: &[CompanyCandidate],
        normalised: &[String],
    ) -> (Vec<(i64, MatchKind, f64)>, usize) {
        let sorted_words = |s: &str| {
            let mut words: Vec<&str> = s.split(' ').collect();
            words.sort_unstable();
            words.join(" ")
        };
        let trimmed = customer.trim();
        let wanted = normalise(trimmed);
        let wanted_sorted = sorted_words(&wanted);
        let mut hits: Vec<(&CompanyCandidate, MatchKind, f64)> = Vec::new();
        let mut at_limit = 0;
        for (c, key) in companies.iter().zip(normalised) {
            if c.name.trim() == trimmed {
                hits.push((c, MatchKind::Exact, EXACT_SCORE));
            } else if wanted.is_empty() || key.is_empty() {
                continue;
            } else if *key == wanted {
                hits.push((c, MatchKind::Normalised, NORMALISED_SCORE));
            } else {
                let longer = key.chars().count().max(wanted.chars().count()) as f64;
                let edits = strsim::osa_distance(key, &wanted)
                    .min(strsim::osa_distance(&sorted_words(key), &wanted_sorted));
                let similarity = 1.0 - edits as f64 / longer;
                if similarity >= CLOSE_THRESHOLD {
                    hits.push((c, MatchKind::Close, similarity * CLOSE_WEIGHT));
                    if 1.0 - (edits + 1) as f64 / longer < CLOSE_THRESHOLD {
                        at_limit += 1;
                    }
                } else {
                    let (short, long) = if key.len() < wanted.len() {
                        (key.as_str(), wanted.as_str())
                    } else {
                        (wanted.as_str(), key.as_str())
                    };
                    if short.chars().count() >= PARTIAL_MIN_CHARS
                        && long.starts_with(&format!("{short} "))
                    {
                        let share =
                            short.split(' ').count() as f64 / long.split(' ').count() as f64;
                        hits.push((c, MatchKind::Partial, share * PARTIAL_WEIGHT));
                    }
                }
            }
        }
        hits.sort_by(|a, b| {
            a.1.cmp(&b.1)
                .then(a.0.standing().cmp(&b.0.standing()))
                .then(b.2.total_cmp(&a.2))
                .then(a.0.id.cmp(&b.0.id))
        });
        let hits = hits.into_iter().map(|(c, k, s)| (c.id, k, s)).collect();
        (hits, at_limit)
    }

    #[test]
    fn fifty_thousand_companies() {
        let mut rng = Lcg(0x5EED);
        let mut companies: Vec<CompanyCandidate> = Vec::with_capacity(50_000);
        let mut id = 0;
        let mut push = |companies: &mut Vec<CompanyCandidate>, name: String, rng: &mut Lcg| {
            id += 1;
            let mut c = company(id, &name);
            match rng.next(20) {
                0 => c.deleted = true,
                1 => c.status = Some("Inactive".to_owned()),
                2 => c.status = None,
                _ => {}
            }
            companies.push(c);
        };
        while companies.len() < 49_900 {
            let name = generated_name(&mut rng);
            push(&mut companies, name, &mut rng);
        }
        // Near-misses of generated names, so that close matches are common.
        while companies.len() < 49_993 {
            let original = companies[rng.next(companies.len())].name.clone();
            let name = typo(&mut rng, &original);
            push(&mut companies, name, &mut rng);
        }
        // Planted around one customer, at the end so ids would not put them first.
        let planted = [
            deleted(company(90_001, "Northwind Traders")),
            company(90_002, "Northwind Traders"),
            company(90_003, "NORTHWIND TRADERS LTD"),
            company(90_004, "Northwind Tradrs"),
            company(90_005, "Traders Northwind"),
            // At the limit, where the prefilter's bounds are tight: 4 insertions
            // in 21 characters (the length bound), 3 substitutions in 17 (the
            // letter-count bound).
            company(90_006, "Northwind Traders Xyz"),
            company(90_007, "Northwind Tradqqq"),
        ];
        companies.extend(planted);
        assert_eq!(companies.len(), 50_000);
        let index = CompanyIndex::new(companies.clone());
        assert_eq!(index.len(), 50_000);

        let got = index.suggest("Northwind Traders", 10);
        assert_eq!(
            ids(&got),
            [90_002, 90_001, 90_003, 90_005, 90_004, 90_007, 90_006]
        );
        assert_eq!(
            kinds(&got),
            [
                MatchKind::Exact,
                MatchKind::Exact,
                MatchKind::Normalised,
                MatchKind::Close,
                MatchKind::Close,
                MatchKind::Close,
                MatchKind::Close
            ]
        );
        assert!(got[6].why.contains("4 edits apart"), "{}", got[6].why);

        // Generated names with one to three typos, so that some close matches
        // are at the limit of the threshold.
        let mut customers = vec!["Northwind Traders".to_owned()];
        for typos in [1, 1, 2, 2, 3, 3] {
            let mut name = companies[rng.next(49_900)].name.clone();
            for _ in 0..typos {
                name = typo(&mut rng, &name);
            }
            customers.push(name);
        }
        let normalised: Vec<String> = companies.iter().map(|c| normalise(&c.name)).collect();
        let (mut close_seen, mut at_limit_seen) = (0, 0);
        for customer in &customers {
            let got: Vec<(i64, MatchKind, f64)> = index
                .suggest(customer, usize::MAX)
                .into_iter()
                .map(|s| (s.company.id, s.kind, s.score))
                .collect();
            let (want, at_limit) = brute_force(customer, &companies, &normalised);
            assert_eq!(got, want, "{customer:?}");
            close_seen += got.iter().filter(|h| h.1 == MatchKind::Close).count();
            at_limit_seen += at_limit;
        }
        // The comparison above is only a check of the prefilter if it had close
        // matches to keep, some of them only just.
        assert!(close_seen >= customers.len(), "{close_seen}");
        assert!(at_limit_seen >= 2, "{at_limit_seen}");
    }

    #[test]
    fn prefilter_bounds_never_exceed_the_edit_distance() {
        let mut rng = Lcg(7);
        for _ in 0..5_000 {
            let a = normalise(&generated_name(&mut rng));
            let mut b = a.clone();
            for _ in 0..rng.next(4) {
                if !b.is_empty() {
                    b = typo(&mut rng, &b);
                }
            }
            let (ka, kb) = (Key::new(&a), Key::new(&b));
            let edits = strsim::osa_distance(&ka.text, &kb.text);
            assert!(ka.chars.abs_diff(kb.chars) <= edits, "{a:?} {b:?}");
            assert!(
                histogram_difference(&ka.histogram, &kb.histogram).div_ceil(2) <= edits,
                "{a:?} {b:?}"
            );
        }
    }
}
