//! A connection's life in one picture: throughput, RTT, congestion window and retransmits
//! over time, drawn from its archive records (feature `plot`).
//!
//! The steps, each usable alone (the `tcp-info plot` command chains them; the query API draws
//! live connections from records it holds):
//! 1. [`find_segments`] lists the archive files of one UUID under an output tree, and
//!    [`read_segments`] reads them — in any order — checks they are one connection and
//!    concatenates their records in segment order;
//! 2. [`Series::from_records`] extracts the plotted values, one point per record carrying
//!    `tcp_info`, plus the state changes and the facts of the title;
//! 3. [`svg`] draws the figure (plotters) and [`png`] rasterises that SVG (resvg, with the
//!    system's fonts).
//!
//! Rates are computed between successive records: the sending rate from Δ`bytes_acked`/Δt,
//! the receiving rate from Δ`bytes_received`/Δt, in Mbit/s (10⁶ bit/s), plotted at the later
//! record's time; the kernel's `delivery_rate` (bytes/s) is converted to the same unit.

mod draw;
mod raster;
mod segments;
mod series;

use std::path::PathBuf;

use thiserror::Error;

use crate::record::ReadError;
use crate::wire::inet_diag::ShortMessage;

pub use draw::{HEIGHT, PANEL_TITLES, WIDTH, svg};
pub use raster::{font_faces, png};
pub use segments::{find_segments, find_segments_since, read_segments, read_segments_so_far};
pub use series::{INFINITE_SSTHRESH, Series};

/// Why a connection could not be plotted.
#[derive(Debug, Error)]
pub enum PlotError {
    /// No archive file was given.
    #[error("no archive given")]
    NoArchive,
    /// An archive could not be read: missing, corrupt, truncated or not an archive. The message
    /// names the file and line.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Several files were given and this one has no Metadata line, so its segment number (the
    /// order of the files) is unknown.
    #[error(
        "{}: no Metadata line, so its segment number is unknown (needed to order several files)",
        path.display()
    )]
    NoMetadata {
        /// The file.
        path: PathBuf,
    },
    /// Two files belong to different connections.
    #[error(
        "{} is connection {uuid} but {} is connection {first_uuid}: give the segments of one connection",
        path.display(),
        first.display()
    )]
    MixedFiles {
        /// The first file read.
        first: PathBuf,
        /// Its UUID.
        first_uuid: String,
        /// The file of another connection.
        path: PathBuf,
        /// That file's UUID.
        uuid: String,
    },
    /// Two files hold the same segment of the connection (the same file given twice, or a copy).
    #[error("{} and {} are both segment {sequence}", path.display(), first.display())]
    DuplicateSegment {
        /// The first file with that segment number.
        first: PathBuf,
        /// The other one.
        path: PathBuf,
        /// The segment number.
        sequence: i64,
    },
    /// The records passed to [`Series::from_records`] carry Metadata lines of two connections.
    #[error("the records mix connections {first} and {other}")]
    MixedRecords {
        /// The first UUID seen.
        first: String,
        /// Another UUID.
        other: String,
    },
    /// A record's RawIDM is too short to be an `inet_diag_msg`.
    #[error("record {index} (0-based): {source}")]
    BadRecord {
        /// Its index in the slice given.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: ShortMessage,
    },
    /// The records hold no snapshot (only Metadata lines, or nothing): nothing to plot.
    #[error("no snapshot records: nothing to plot")]
    NoSnapshots,
    /// The UUID given to [`find_segments`] cannot be part of a file name.
    #[error("{0:?} is not a connection UUID (empty, or holds '/' or NUL)")]
    BadUuid(String),
    /// Listing a directory of the archive tree failed.
    #[error("listing {}: {source}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// plotters failed to draw the SVG.
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// The SVG could not be rasterised or encoded as PNG.
    #[error("rendering the PNG: {0}")]
    Raster(String),
}
