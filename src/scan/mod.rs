//! The one segment scanner. Writer open, the readers, dump, verify, segments and
//! repair all walk a log through [`Scanner`]: it streams records with memory bounded
//! by the largest record, checks framing, protobuf, CRC and LSN continuity, and
//! classifies the first problem of each segment as a torn tail or corruption.

mod check;
mod event;
mod holes;
mod live;
mod options;
mod report;
mod scanner;
mod source;

pub use event::{Event, RetiredGap, ScannedRecord, SegmentSummary};
pub(crate) use event::{FoundRecord, Step};
pub use options::ScanOptions;
pub use report::{scan_log, CheckpointPos, ScanReport};
pub use scanner::Scanner;
