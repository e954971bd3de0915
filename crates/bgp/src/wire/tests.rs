//! Hand-written byte vectors for whole messages.
