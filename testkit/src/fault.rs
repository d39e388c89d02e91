//! A scripted HTTP/1.1 server for faults real servers will not make on
//! demand. (To be written.)
