//! Float samples of series the scrape cache knows, held back to be appended
//! together.
//!
//! Most lines of a steady-state scrape are such samples. The WAL checks
//! every sample against its series' newest timestamp under the series
//! table's lock; taken once a sample, that lock's two atomic instructions
//! were most of an append's cost. Appended in batches
//! ([`Appender::append_floats`]), the lock is taken once a batch and never
//! held while the page is parsed.
//!
//! A batched sample whose series the storage has forgotten meanwhile
//! (garbage-collected after a long pause) is resolved again from its line:
//! the batch keeps a parser positioned at its first line, which replays the
//! page from there to the lines it needs (`ScrapeLoop::flush_floats`).

use parking_lot::Mutex;
use tributary_exposition::Parser;
use tributary_model::{AppendError, Appender, RefSample};

/// Samples a batch holds before it is appended: the series table's lock
/// is then held for ~128 hash-free slot lookups, about a microsecond.
const FLOAT_BATCH: usize = 128;

pub(crate) struct FloatBatch<'a> {
    samples: Vec<RefSample>,
    /// The line number of each sample.
    lines: Vec<usize>,
    /// The parser as it was on the first sample's line.
    start: Option<Parser<'a>>,
    refused: Vec<(usize, AppendError)>,
}

/// Idle batches' vectors, so that a scrape allocates none: a few, as many
/// as scrapes append at once.
static SPARE: Mutex<Vec<(Vec<RefSample>, Vec<usize>)>> = Mutex::new(Vec::new());
const MAX_SPARE: usize = 4;

impl<'a> FloatBatch<'a> {
    pub fn new() -> Self {
        let (samples, lines) = SPARE.lock().pop().unwrap_or_else(|| {
            (
                Vec::with_capacity(FLOAT_BATCH),
                Vec::with_capacity(FLOAT_BATCH),
            )
        });
        FloatBatch {
            samples,
            lines,
            start: None,
            refused: Vec::new(),
        }
    }

    /// Holds back the sample of the parser's current line; true when the
    /// batch is full.
    pub fn push(&mut self, parser: &Parser<'a>, sample: RefSample) -> bool {
        if self.samples.is_empty() {
            self.start = Some(parser.clone());
        }
        self.samples.push(sample);
        self.lines.push(parser.line_number());
        self.samples.len() >= FLOAT_BATCH
    }

    /// Appends the batch; [`FloatBatch::refused`] then lists what the
    /// storage refused.
    pub fn append(&mut self, app: &mut dyn Appender) {
        self.refused.clear();
        if !self.samples.is_empty() {
            app.append_floats(&self.samples, &mut self.refused);
        }
    }

    /// Each sample the last [`FloatBatch::append`] refused, with its line
    /// and why, in page order.
    pub fn refused(&self) -> impl Iterator<Item = (RefSample, usize, &AppendError)> + '_ {
        self.refused
            .iter()
            .filter_map(|(i, e)| Some((*self.samples.get(*i)?, *self.lines.get(*i)?, e)))
    }

    /// A parser on the batch's first line, to be moved on with [`replay_to`].
    pub fn replay(&self) -> Option<Parser<'a>> {
        self.start.clone()
    }

    pub fn clear(&mut self) {
        self.samples.clear();
        self.lines.clear();
        self.refused.clear();
        self.start = None;
    }
}

impl Drop for FloatBatch<'_> {
    fn drop(&mut self) {
        let (mut samples, mut lines) = (
            std::mem::take(&mut self.samples),
            std::mem::take(&mut self.lines),
        );
        samples.clear();
        lines.clear();
        let mut spare = SPARE.lock();
        if spare.len() < MAX_SPARE {
            spare.push((samples, lines));
        }
    }
}

/// Moves `parser` on to line `line` (the parser reads the page as it did the
/// first time, so it stops on the same series); false if the page ends
/// first.
pub(crate) fn replay_to(parser: &mut Parser<'_>, line: usize) -> bool {
    while parser.line_number() < line {
        if !matches!(parser.next(), Ok(Some(_))) {
            return false;
        }
    }
    parser.line_number() == line
}
