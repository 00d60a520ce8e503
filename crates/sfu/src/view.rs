//! How a subscriber shows a video it receives (the `track_settings`
//! message): an input of the stream allocator.

/// How a subscriber shows one video it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackView {
    /// Shown at all; a hidden video is not sent.
    pub visible: bool,
    /// Width of its tile in CSS pixels, if known.
    pub width: Option<u32>,
    /// Height of its tile in CSS pixels, if known.
    pub height: Option<u32>,
}

impl Default for TrackView {
    /// Shown, at no particular size (the grid rule decides its layer).
    fn default() -> Self {
        Self {
            visible: true,
            width: None,
            height: None,
        }
    }
}
