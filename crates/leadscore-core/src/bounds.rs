//! What one lead's state may hold, so that it always fits in one changelog
//! record: the codec refuses longer profile values and opportunity ids (as
//! invalid fields), the engine keeps at most [`MAX_OPPORTUNITIES`], and the
//! model bounds its windows ([`crate::Model::window_bounds`]). The store
//! turns these into the largest encoded state a model can produce.

/// The longest text profile value, in bytes.
pub const MAX_PROFILE_TEXT_BYTES: usize = 4096;
/// The most items of a list profile value (`technologies`).
pub const MAX_LIST_ITEMS: usize = 100;
/// The longest item of a list profile value, in bytes.
pub const MAX_LIST_ITEM_BYTES: usize = 256;
/// The longest opportunity id, in bytes.
pub const MAX_OPPORTUNITY_ID_BYTES: usize = 256;
/// The most opportunities a lead keeps: past it, the oldest closed one (or,
/// if all are open, the oldest) is forgotten. Stages it reached stay known.
pub const MAX_OPPORTUNITIES: usize = 100;
