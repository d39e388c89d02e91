//! The OCI distribution protocol. (To be written.)
