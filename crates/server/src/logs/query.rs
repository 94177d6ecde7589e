//! The log query of `GET {B}/sandboxes/{id}/logs` (docs/protocol/control-plane.md, Logs):
//! filters (levels, processes, a text), a page size from the start (`head`) or the end
//! (`tail`), and page tokens. Pure: it works on the records read from the files.
//!
//! Tokens are opaque to clients: `f<n>` continues forward from record `n`, `b<n>` backward
//! before it. A `head` page (the default, 1000 records) hands out a forward token while more
//! records match after it; a `tail` page a backward one while more match before it. Each page
//! is in time order either way.

use std::collections::BTreeMap;

use alcove_wire::journal::{JournalEvent, LogLevel, ProcessLogFilter};

use super::files::StoredRecord;

/// Records in a page when neither `head` nor `tail` is given.
pub const DEFAULT_PAGE: usize = 1000;
/// Largest `head` or `tail`.
pub const MAX_PAGE: usize = 10_000;

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Records from number `n` on.
    Forward(u64),
    /// Records before number `n`.
    Backward(u64),
}

impl Token {
    /// Reads a token handed out by [`page`].
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, n) = text.split_at_checked(1)?;
        let n = n.parse::<u64>().ok()?;
        match kind {
            "f" => Some(Token::Forward(n)),
            "b" => Some(Token::Backward(n)),
            _ => None,
        }
    }

    /// The text form.
    pub fn render(self) -> String {
        match self {
            Token::Forward(n) => format!("f{n}"),
            Token::Backward(n) => format!("b{n}"),
        }
    }
}

/// A checked log query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// Levels to keep (empty = all).
    pub levels: Vec<LogLevel>,
    /// Processes to keep, each a pid, a managed id or a managed name (empty = all records,
    /// those of no process included).
    pub process_ids: Vec<String>,
    /// Keep records whose body holds this text (case-insensitive).
    pub body: Option<String>,
    /// Where the page starts.
    pub token: Option<Token>,
    /// Page from the start (`false`) or from the end (`true`).
    pub from_end: bool,
    /// Records in the page.
    pub size: usize,
}

/// Why a query is refused; `field` names the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The query parameter at fault.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl LogQuery {
    /// Checks the raw parameters.
    pub fn parse(
        levels: &[String],
        process_ids: Vec<String>,
        token: Option<&str>,
        head: Option<&str>,
        tail: Option<&str>,
        body: Option<String>,
    ) -> Result<Self, QueryError> {
        let bad = |field, reason: &str| QueryError {
            field,
            reason: reason.to_string(),
        };
        let mut parsed = Vec::new();
        for level in levels
            .iter()
            .flat_map(|l| l.split(','))
            .filter(|l| !l.is_empty())
        {
            let level = LogLevel::parse(level).ok_or_else(|| {
                bad(
                    "level",
                    &format!("{level:?} is not a level: use 1 to 6 or trace, debug, info, warn, error, fatal"),
                )
            })?;
            parsed.push(level);
        }
        let size = |field: &'static str, text: Option<&str>| -> Result<Option<usize>, QueryError> {
            text.filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            bad(
                                field,
                                &format!("must be a whole number from 1 to {MAX_PAGE}"),
                            )
                        })
                })
                .transpose()
        };
        let head = size("head", head)?;
        let tail = size("tail", tail)?;
        if head.is_some() && tail.is_some() {
            return Err(bad("head", "give head or tail, not both"));
        }
        let token = token
            .filter(|t| !t.is_empty())
            .map(|t| {
                Token::parse(t).ok_or_else(|| {
                    bad(
                        "nextToken",
                        "not a token of this server (pass a nextToken back as it came)",
                    )
                })
            })
            .transpose()?;
        let from_end = match (token, tail.is_some()) {
            (Some(Token::Backward(_)), false) if head.is_some() => {
                return Err(bad(
                    "nextToken",
                    "this token continues a tail query: use tail",
                ));
            }
            (Some(Token::Forward(_)), true) => {
                return Err(bad(
                    "nextToken",
                    "this token continues a head query: use head",
                ));
            }
            (Some(Token::Backward(_)), _) => true,
            (_, from_end) => from_end,
        };
        Ok(Self {
            levels: parsed,
            process_ids: process_ids.into_iter().filter(|p| !p.is_empty()).collect(),
            body: body.filter(|b| !b.is_empty()).map(|b| b.to_lowercase()),
            token,
            from_end,
            size: head.or(tail).unwrap_or(DEFAULT_PAGE),
        })
    }

    fn matches(&self, stored: &StoredRecord) -> bool {
        let r = &stored.record;
        if !self.levels.is_empty() && !self.levels.contains(&r.level) {
            return false;
        }
        if !self.process_ids.is_empty() {
            let pid = r.pid.map(|p| p.to_string());
            let hit = self.process_ids.iter().any(|want| {
                pid.as_deref() == Some(want)
                    || r.managed_id.as_deref() == Some(want)
                    || r.managed_name.as_deref() == Some(want)
            });
            if !hit {
                return false;
            }
        }
        match &self.body {
            Some(needle) => r.body.to_lowercase().contains(needle),
            None => true,
        }
    }
}

/// One page of records and the token of the next.
#[derive(Debug, Default)]
pub struct Page {
    /// Records, oldest first.
    pub records: Vec<StoredRecord>,
    /// Token of the next page, if more records match.
    pub next: Option<Token>,
}

/// The page of `records` (oldest first) that `query` asks for.
pub fn page(records: impl IntoIterator<Item = StoredRecord>, query: &LogQuery) -> Page {
    if query.from_end {
        let before = match query.token {
            Some(Token::Backward(n)) => n,
            _ => u64::MAX,
        };
        // The last `size` matches, kept as they stream past: a full window that lets one go
        // means more match before it.
        let mut window = std::collections::VecDeque::with_capacity(query.size.min(1024));
        let mut more = false;
        for r in records {
            if r.n >= before || !query.matches(&r) {
                continue;
            }
            if window.len() == query.size {
                more = true;
                // A page of no records (size 0) keeps nothing.
                if window.pop_front().is_none() {
                    continue;
                }
            }
            window.push_back(r);
        }
        let records: Vec<StoredRecord> = window.into();
        let next = more
            .then(|| records.first().map(|r| Token::Backward(r.n)))
            .flatten();
        Page { records, next }
    } else {
        let from = match query.token {
            Some(Token::Forward(n)) => n,
            _ => 0,
        };
        let mut matching = records
            .into_iter()
            .filter(|r| r.n >= from && query.matches(r));
        let records: Vec<StoredRecord> = matching.by_ref().take(query.size).collect();
        let next = matching
            .next()
            .is_some()
            .then(|| records.last().map(|r| Token::Forward(r.n + 1)))
            .flatten();
        Page { records, next }
    }
}

/// The processes that have records, in order of first appearance.
pub fn processes(records: impl IntoIterator<Item = StoredRecord>) -> Vec<ProcessLogFilter> {
    let mut by_pid: BTreeMap<u32, (usize, ProcessLogFilter)> = BTreeMap::new();
    for stored in records {
        let r = &stored.record;
        let Some(pid) = r.pid else { continue };
        let order = by_pid.len();
        let (_, entry) = by_pid.entry(pid).or_insert_with(|| {
            (
                order,
                ProcessLogFilter {
                    process_id: pid.to_string(),
                    process_pid: pid.to_string(),
                    process_command: String::new(),
                    process_managed_id: String::new(),
                    process_managed_name: String::new(),
                    first_seen: r.timestamp,
                    last_seen: r.timestamp,
                    log_count: 0,
                },
            )
        });
        entry.log_count += 1;
        entry.first_seen = entry.first_seen.min(r.timestamp);
        entry.last_seen = entry.last_seen.max(r.timestamp);
        if r.event == Some(JournalEvent::ProcessStarted)
            && let Some(command) = &r.command
        {
            entry.process_command.clone_from(command);
        }
        if let Some(id) = &r.managed_id {
            entry.process_managed_id.clone_from(id);
        }
        if let Some(name) = &r.managed_name {
            entry.process_managed_name.clone_from(name);
        }
    }
    let mut list: Vec<_> = by_pid.into_values().collect();
    list.sort_by_key(|(order, _)| *order);
    list.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use alcove_wire::journal::JournalRecord;
    use alcove_wire::process::OutputStream;

    use super::*;

    fn stored(n: u64, level: LogLevel, pid: Option<u32>, body: &str) -> StoredRecord {
        StoredRecord {
            n,
            record: JournalRecord {
                seq: n + 1,
                pid,
                stream: Some(OutputStream::Stdout),
                managed_id: pid.filter(|p| *p == 7).map(|_| "web".into()),
                managed_name: pid.filter(|p| *p == 7).map(|_| "web".into()),
                ..JournalRecord::new(1000 + i64::try_from(n).unwrap_or(0), level, body.into())
            },
        }
    }

    fn sample() -> Vec<StoredRecord> {
        (0..10)
            .map(|n| {
                let level = if n % 3 == 0 {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                };
                let pid = if n % 2 == 0 { Some(7) } else { Some(8) };
                stored(n, level, pid, &format!("line {n}"))
            })
            .collect()
    }

    fn q(
        levels: &[&str],
        procs: &[&str],
        token: Option<&str>,
        head: Option<&str>,
        tail: Option<&str>,
    ) -> Result<LogQuery, QueryError> {
        LogQuery::parse(
            &levels.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            procs.iter().map(|s| s.to_string()).collect(),
            token,
            head,
            tail,
            None,
        )
    }

    fn ns(page: &Page) -> Vec<u64> {
        page.records.iter().map(|r| r.n).collect()
    }

    #[test]
    fn head_pages_forward_until_the_end() {
        let query = q(&[], &[], None, Some("4"), None).expect("query");
        let first = page(sample(), &query);
        assert_eq!(ns(&first), [0, 1, 2, 3]);
        let token = first.next.expect("more").render();
        let query = q(&[], &[], Some(&token), Some("4"), None).expect("query");
        let second = page(sample(), &query);
        assert_eq!(ns(&second), [4, 5, 6, 7]);
        let token = second.next.expect("more").render();
        let third = page(
            sample(),
            &q(&[], &[], Some(&token), Some("4"), None).expect("q"),
        );
        assert_eq!(ns(&third), [8, 9]);
        assert_eq!(third.next, None);
    }

    #[test]
    fn tail_pages_backward_each_in_time_order() {
        let query = q(&[], &[], None, None, Some("3")).expect("query");
        let last = page(sample(), &query);
        assert_eq!(ns(&last), [7, 8, 9]);
        let token = last.next.expect("more").render();
        let before = page(
            sample(),
            &q(&[], &[], Some(&token), None, Some("3")).expect("q"),
        );
        assert_eq!(ns(&before), [4, 5, 6]);
        let mut token = before.next.expect("more").render();
        let mut pages = Vec::new();
        loop {
            let older = page(
                sample(),
                &q(&[], &[], Some(&token), None, Some("3")).expect("q"),
            );
            pages.push(ns(&older));
            match older.next {
                Some(next) => token = next.render(),
                None => break,
            }
        }
        assert_eq!(
            pages,
            [vec![1, 2, 3], vec![0]],
            "and no page past the first record"
        );
    }

    #[test]
    fn filters_by_level_process_and_text() {
        let warn = page(sample(), &q(&["4"], &[], None, None, None).expect("q"));
        assert_eq!(ns(&warn), [0, 3, 6, 9]);
        let named = page(
            sample(),
            &q(&["warn"], &["web"], None, None, None).expect("q"),
        );
        assert_eq!(ns(&named), [0, 6]);
        let by_pid = page(sample(), &q(&[], &["8"], None, Some("2"), None).expect("q"));
        assert_eq!(ns(&by_pid), [1, 3]);
        let mut text = q(&[], &[], None, None, None).expect("q");
        text.body = Some("line 5".into());
        assert_eq!(ns(&page(sample(), &text)), [5]);
    }

    #[test]
    fn bad_queries_name_their_parameter() {
        let field = |r: Result<LogQuery, QueryError>| r.expect_err("refused").field;
        assert_eq!(field(q(&[], &[], None, Some("1"), Some("1"))), "head");
        assert_eq!(field(q(&[], &[], None, Some("0"), None)), "head");
        assert_eq!(field(q(&[], &[], None, None, Some("-2"))), "tail");
        assert_eq!(field(q(&["9"], &[], None, None, None)), "level");
        assert_eq!(field(q(&[], &[], Some("zz"), None, None)), "nextToken");
        assert_eq!(field(q(&[], &[], Some("f3"), None, Some("2"))), "nextToken");
    }

    #[test]
    fn processes_are_listed_once_with_counts() {
        let list = processes(sample());
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].process_id, "7");
        assert_eq!(list[0].process_managed_name, "web");
        assert_eq!(list[0].log_count, 5);
        assert_eq!(list[1].first_seen, 1001);
        assert_eq!(list[1].last_seen, 1009);
    }
}
