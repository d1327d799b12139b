"""The FUSE daemon: inode tree, verified reader, staged writes, save, control channel."""
