//! Real servers from Debian's packages (nginx, docker-registry, containerd)
//! on loopback. (To be written.)
