# file: src/rootfs/mod.rs
# mistake: /proc mounted without MS_NOSUID|MS_NODEV|MS_NOEXEC
# caught by: ch02_proc_is_the_containers_own_and_nosuid_nodev_noexec
s|let flags = MsFlags::MS_NOSUID \| MsFlags::MS_NOEXEC \| MsFlags::MS_NODEV;|let flags = MsFlags::empty();|
