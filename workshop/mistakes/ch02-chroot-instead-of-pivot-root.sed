# file: src/rootfs/mod.rs
# mistake: chroot(".") instead of pivot_root: the host's root stays the mount namespace's root, reachable by escapes
# caught by: ch02_pivot_root_not_chroot (the kernel refuses unshare -U to a chrooted process)
s|nix::unistd::pivot_root("\.", "\.")|nix::unistd::chroot(".")|
/umount2("\.", MntFlags::MNT_DETACH)/d
