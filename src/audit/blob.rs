//! The Functions host's audit sink: append blobs in the host storage account
//! (`AzureWebJobsStorage`), one per month, in the container [`super::AUDIT_CONTAINER`].
//!
//! The trail is the blobs `audit-YYYY-MM.jsonl` in name order (a month whose blob is full,
//! 50,000 blocks, goes on in `audit-YYYY-MM_0001.jsonl`, `_0002`, ..., which sort after it and
//! before the next month). The chain runs across them: the first record of a blob chains after
//! the last record of the blob before it, so [`super::verify`] over all their lines in order
//! checks the whole trail, and a removed blob breaks it too.
//!
//! Appends are optimistic: read where the trail ends (the last blob's length and last line),
//! chain the records after it, and append them with `x-ms-blob-condition-appendpos` set to that
//! length. When another writer (another instance, a ToolkitApp request in parallel) appended
//! first the service refuses (`412 AppendPositionConditionNotMet`) and the records are chained
//! again after the new end, a bounded number of times: two writers never fork the chain. A
//! block carries at most [`MAX_APPEND_BLOCK`] bytes; a run's records that need more go in
//! several blocks, each chained after the one before.

use super::{chain, Event, Head, Origin};
use crate::azure::call::Call;
use crate::azure::storage::{
    AppendOutcome, BlobClient, ListedBlob, MAX_APPEND_BLOCK, MAX_APPEND_BLOCKS,
};
use crate::error::Error;
use std::time::Duration;
use time::OffsetDateTime;

/// The names of the trail's blobs start with this.
pub const BLOB_PREFIX: &str = "audit-";

/// How many times an append is chained again after another writer's (412) before it fails.
pub const MAX_ATTEMPTS: usize = 16;

/// How much of a blob's end is read at first to find its last line (doubled until it holds
/// one whole line).
const TAIL_WINDOW: u64 = 8 * 1024;

/// The blob of the month `t` falls in: `audit-YYYY-MM.jsonl` (UTC).
pub fn month_blob(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{BLOB_PREFIX}{:04}-{:02}.jsonl",
        t.year(),
        u8::from(t.month())
    )
}

/// The blob after `name` in the same month, for when `name` is full: `audit-2026-12.jsonl`
/// goes on in `audit-2026-12_0001.jsonl`, that in `_0002`, ... (`_` sorts after `.`).
pub fn next_part(name: &str) -> String {
    let stem = name.trim_end_matches(".jsonl");
    match stem.split_once('_') {
        Some((month, part)) => {
            let n: u32 = part.parse().unwrap_or(0);
            format!("{month}_{:04}.jsonl", n + 1)
        }
        None => format!("{stem}_0001.jsonl"),
    }
}

/// Whether `name` is one of the trail's blobs (`audit-YYYY-MM.jsonl` or
/// `audit-YYYY-MM_NNNN.jsonl`); other blobs in the container are not the trail's.
pub fn is_trail_blob(name: &str) -> bool {
    let Some(stem) = name
        .strip_prefix(BLOB_PREFIX)
        .and_then(|n| n.strip_suffix(".jsonl"))
    else {
        return false;
    };
    let (month, part) = match stem.split_once('_') {
        Some((m, p)) => (m, Some(p)),
        None => (stem, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let month_ok =
        month.len() == 7 && digits(&month[..4], 4) && &month[4..5] == "-" && digits(&month[5..], 2);
    month_ok && part.is_none_or(|p| digits(p, 4))
}

/// Where the next records go: the blob, whether it exists, its length, and the head they chain
/// after (the blob's last record, or the last record of the blobs before it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    blob: String,
    exists: bool,
    length: u64,
    head: Head,
}

/// Which blob the next records of `now` go to, among the trail's `blobs` (in name order): the
/// last one when it is this month's or later (a clock behind another instance's never writes
/// before the end), else this month's new blob.
fn target(blobs: &[ListedBlob], now: OffsetDateTime) -> (String, Option<u64>) {
    let month = month_blob(now);
    match blobs.last() {
        Some(last) if last.name >= month => (last.name.clone(), Some(last.length)),
        _ => (month, None),
    }
}

/// How many of `lines` (the chained records, in order) go in one block: as many as fit in
/// `max` bytes with their line ends, at least one (`None` when even the first does not fit).
fn fits(lines: &[String], max: usize) -> Option<usize> {
    let mut size = 0;
    let mut n = 0;
    for l in lines {
        size += l.len() + 1;
        if size > max {
            break;
        }
        n += 1;
    }
    (n > 0).then_some(n)
}

/// The last line of `tail`, the end of a blob (which must end with a line end); `None` when
/// `tail` holds no line end before its last line and does not start at the blob's start.
fn last_line(tail: &[u8], from_start: bool) -> Result<Option<String>, String> {
    let Some(body) = tail.strip_suffix(b"\n") else {
        return Err("its last line is incomplete (no line end): run `audit verify`".into());
    };
    let line = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => &body[i + 1..],
        None if from_start => body,
        None => return Ok(None),
    };
    String::from_utf8(line.to_vec())
        .map(Some)
        .map_err(|_| "its last line is not UTF-8: run `audit verify`".into())
}

/// One blob of the trail as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailBlob {
    /// The blob's name.
    pub name: String,
    /// Its lines, without their line ends.
    pub lines: Vec<String>,
}

/// Line `line` (from 1) of the lines of `blobs` one after the other: the blob it is in and its
/// line there (from 1).
pub fn locate(blobs: &[TrailBlob], line: usize) -> Option<(&str, usize)> {
    let mut before = 0;
    for b in blobs {
        if line <= before + b.lines.len() {
            return Some((b.name.as_str(), line - before));
        }
        before += b.lines.len();
    }
    None
}

/// The audit trail's append blobs in one container of one storage account.
#[derive(Clone, Debug)]
pub struct BlobSink {
    client: BlobClient,
    container: String,
}

impl BlobSink {
    /// The trail in `container` of `client`'s account.
    pub fn new(client: BlobClient, container: &str) -> Self {
        Self {
            client,
            container: container.into(),
        }
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// `blob <account>/<container>`, for messages.
    pub fn describe(&self) -> String {
        format!("blob {}/{}", self.client.account().name, self.container)
    }

    /// Appends `events` of run `run_id` at the trail's end, chained after its last record
    /// (creating the container and the month's blob when missing). Every record is appended
    /// or the error says why not all were: `Err((written, why))`.
    pub async fn append(
        &self,
        call: &Call,
        run_id: &str,
        origin: &Origin,
        events: &[Event],
        now: OffsetDateTime,
    ) -> Result<(), (usize, String)> {
        let mut done = 0;
        let fail = |done: usize, e: String| Err((done, e));
        let mut end = match self.end(call, now).await {
            Ok(end) => end,
            Err(e) => return fail(0, e),
        };
        let mut moved = 0;
        while done < events.len() {
            if !end.exists {
                if let Err(e) = self
                    .client
                    .create_append_blob(call, &self.container, &end.blob, false)
                    .await
                {
                    return fail(done, self.says(&end.blob, &e));
                }
                end.exists = true;
            }
            let (lines, _) = chain(&end.head, run_id, origin, &events[done..]);
            let Some(n) = fits(&lines, MAX_APPEND_BLOCK) else {
                return fail(
                    done,
                    format!("a record is longer than one block ({MAX_APPEND_BLOCK} bytes)"),
                );
            };
            let mut body = String::new();
            for l in &lines[..n] {
                body.push_str(l);
                body.push('\n');
            }
            let head = Head::after(&lines[n - 1]).expect("a chained line is a record");
            let size = body.len() as u64;
            let outcome = self
                .client
                .append_block(
                    call,
                    &self.container,
                    &end.blob,
                    end.length,
                    body.into_bytes(),
                )
                .await;
            match outcome {
                Ok(AppendOutcome::Appended { blocks, .. }) => {
                    done += n;
                    end.length += size;
                    end.head = head;
                    if blocks >= MAX_APPEND_BLOCKS {
                        end = self.next_blob(&end);
                    }
                }
                Ok(AppendOutcome::Moved) => {
                    moved += 1;
                    if moved >= MAX_ATTEMPTS {
                        return fail(
                            done,
                            format!(
                                "{}: other writers appended first {moved} times in a row",
                                self.blob_name(&end.blob)
                            ),
                        );
                    }
                    // Writers that collided spread out before they read again.
                    let jitter = rand::random::<u64>() % 20 + 5 * moved as u64;
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    end = match self.end(call, now).await {
                        Ok(end) => end,
                        Err(e) => return fail(done, e),
                    };
                }
                Ok(AppendOutcome::Full) => {
                    // Full before our block: where it ends now, then on in its next part
                    // (unless another writer made that already, which `end` then names).
                    let full = end.blob.clone();
                    end = match self.end(call, now).await {
                        Ok(end) => end,
                        Err(e) => return fail(done, e),
                    };
                    if end.blob == full {
                        end = self.next_blob(&end);
                    }
                }
                Err(e) => return fail(done, self.says(&end.blob, &e)),
            }
        }
        Ok(())
    }

    /// The next part after `end`'s blob, chained after `end`'s head.
    fn next_blob(&self, end: &End) -> End {
        End {
            blob: next_part(&end.blob),
            exists: false,
            length: 0,
            head: end.head.clone(),
        }
    }

    fn blob_name(&self, blob: &str) -> String {
        format!("{}/{blob}", self.container)
    }

    fn says(&self, blob: &str, e: &Error) -> String {
        format!("{}: {e}", self.blob_name(blob))
    }

    /// The trail's blobs in name order, with their lengths (the container made when missing).
    async fn blobs(&self, call: &Call, create: bool) -> Result<Vec<ListedBlob>, String> {
        let listed = self
            .client
            .list_blobs(call, &self.container, BLOB_PREFIX)
            .await
            .map_err(|e| format!("{}: {e}", self.container))?;
        let Some(listed) = listed else {
            if create {
                self.client
                    .create_container(call, &self.container)
                    .await
                    .map_err(|e| format!("{}: {e}", self.container))?;
            }
            return Ok(Vec::new());
        };
        Ok(listed
            .into_iter()
            .filter(|b| is_trail_blob(&b.name))
            .collect())
    }

    /// Where the trail ends for records of `now`.
    async fn end(&self, call: &Call, now: OffsetDateTime) -> Result<End, String> {
        let blobs = self.blobs(call, true).await?;
        let (blob, length) = target(&blobs, now);
        let exists = length.is_some();
        let length = length.unwrap_or(0);
        // The head: this blob's last record, else the last record of a blob before it.
        let last = blobs.iter().rev().find(|b| b.name <= blob && b.length > 0);
        let head = match last {
            Some(b) => self.head_of(call, &b.name, b.length).await?,
            None => Head::empty(),
        };
        Ok(End {
            blob,
            exists,
            length,
            head,
        })
    }

    /// The head after the last line of `blob`, `length` bytes long (more than 0).
    async fn head_of(&self, call: &Call, blob: &str, length: u64) -> Result<Head, String> {
        let mut window = TAIL_WINDOW;
        loop {
            let first = length.saturating_sub(window);
            let tail = self
                .client
                .get_blob(call, &self.container, blob, Some((first, length - 1)))
                .await
                .map_err(|e| self.says(blob, &e))?
                .ok_or_else(|| format!("{}: gone while read", self.blob_name(blob)))?;
            let line = last_line(&tail, first == 0)
                .map_err(|why| format!("{}: {why}", self.blob_name(blob)))?;
            match line {
                Some(line) => {
                    return Head::after(&line).map_err(|why| {
                        format!(
                            "{}: its last line is {why}: run `audit verify`",
                            self.blob_name(blob)
                        )
                    })
                }
                None => window *= 4,
            }
        }
    }

    /// Every blob of the trail, in name order, with its lines.
    pub async fn read(&self, call: &Call) -> Result<Vec<TrailBlob>, String> {
        let mut out = Vec::new();
        for b in self.blobs(call, false).await? {
            let bytes = self
                .client
                .get_blob(call, &self.container, &b.name, None)
                .await
                .map_err(|e| self.says(&b.name, &e))?
                .unwrap_or_default();
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{}: not UTF-8 text", self.blob_name(&b.name)))?;
            out.push(TrailBlob {
                name: b.name,
                lines: text.lines().map(str::to_string).collect(),
            });
        }
        Ok(out)
    }

    /// The last `n` lines of the trail (fewer when it has fewer), reading blobs from the last
    /// one back only as far as needed.
    pub async fn tail(&self, call: &Call, n: usize) -> Result<Vec<String>, String> {
        let blobs = self.blobs(call, false).await?;
        let mut out: Vec<String> = Vec::new();
        for b in blobs.iter().rev() {
            if out.len() >= n {
                break;
            }
            let bytes = self
                .client
                .get_blob(call, &self.container, &b.name, None)
                .await
                .map_err(|e| self.says(&b.name, &e))?
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.append(&mut out);
            out = lines;
        }
        let skip = out.len().saturating_sub(n);
        Ok(out.split_off(skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn listed(name: &str, length: u64) -> ListedBlob {
        ListedBlob {
            name: name.into(),
            length,
        }
    }

    #[test]
    fn blobs_are_named_by_month_and_parts_sort_between_months() {
        assert_eq!(
            month_blob(datetime!(2026-12-31 23:59:59 UTC)),
            "audit-2026-12.jsonl"
        );
        // A time with an offset is taken in UTC.
        assert_eq!(
            month_blob(datetime!(2027-01-01 00:30:00 +01:00)),
            "audit-2026-12.jsonl"
        );
        assert_eq!(next_part("audit-2026-12.jsonl"), "audit-2026-12_0001.jsonl");
        assert_eq!(
            next_part("audit-2026-12_0001.jsonl"),
            "audit-2026-12_0002.jsonl"
        );
        let mut names = vec![
            "audit-2027-01.jsonl".to_string(),
            "audit-2026-12_0001.jsonl".into(),
            "audit-2026-12.jsonl".into(),
            "audit-2026-11.jsonl".into(),
            "audit-2026-12_0002.jsonl".into(),
        ];
        names.sort();
        assert_eq!(
            names,
            [
                "audit-2026-11.jsonl",
                "audit-2026-12.jsonl",
                "audit-2026-12_0001.jsonl",
                "audit-2026-12_0002.jsonl",
                "audit-2027-01.jsonl"
            ]
        );
        for name in &names {
            assert!(is_trail_blob(name), "{name}");
        }
        for other in [
            "audit-2026-12.json",
            "audit-2026-1.jsonl",
            "audit-2026-12_1.jsonl",
            "notes.txt",
            "audit-2026x12.jsonl",
        ] {
            assert!(!is_trail_blob(other), "{other}");
        }
    }

    #[test]
    fn the_target_is_the_last_blob_unless_a_new_month_began() {
        let now = datetime!(2026-12-05 06:00:00 UTC);
        assert_eq!(target(&[], now), ("audit-2026-12.jsonl".into(), None));
        let nov = [listed("audit-2026-11.jsonl", 10)];
        assert_eq!(target(&nov, now), ("audit-2026-12.jsonl".into(), None));
        let dec = [
            listed("audit-2026-11.jsonl", 10),
            listed("audit-2026-12.jsonl", 5),
            listed("audit-2026-12_0001.jsonl", 7),
        ];
        assert_eq!(
            target(&dec, now),
            ("audit-2026-12_0001.jsonl".into(), Some(7))
        );
        // Another instance's clock is ahead: its month's blob is the end, never written before.
        let jan = [listed("audit-2027-01.jsonl", 3)];
        assert_eq!(target(&jan, now), ("audit-2027-01.jsonl".into(), Some(3)));
    }

    #[test]
    fn a_block_takes_whole_lines_up_to_its_limit() {
        let lines: Vec<String> = ["aaaa", "bbbb", "cc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(fits(&lines, 100), Some(3));
        assert_eq!(fits(&lines, 10), Some(2));
        assert_eq!(fits(&lines, 5), Some(1));
        assert_eq!(fits(&lines, 4), None);
    }

    #[test]
    fn the_last_line_is_found_in_a_tail_or_asks_for_more() {
        assert_eq!(last_line(b"a\nbc\n", false).unwrap().as_deref(), Some("bc"));
        assert_eq!(last_line(b"bc\n", true).unwrap().as_deref(), Some("bc"));
        assert_eq!(last_line(b"bc\n", false).unwrap(), None);
        assert!(last_line(b"a\nbc", true)
            .unwrap_err()
            .contains("incomplete"));
    }

    #[test]
    fn a_line_of_the_trail_is_located_in_its_blob() {
        let blobs = [
            TrailBlob {
                name: "audit-2026-11.jsonl".into(),
                lines: vec!["1".into(), "2".into()],
            },
            TrailBlob {
                name: "audit-2026-12.jsonl".into(),
                lines: vec!["3".into()],
            },
        ];
        assert_eq!(locate(&blobs, 2), Some(("audit-2026-11.jsonl", 2)));
        assert_eq!(locate(&blobs, 3), Some(("audit-2026-12.jsonl", 1)));
        assert_eq!(locate(&blobs, 4), None);
    }
}
