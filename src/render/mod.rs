//! Rendering images into root filesystems. (To be written.)
