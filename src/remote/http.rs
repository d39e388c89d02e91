//! The HTTP client. (To be written.)
