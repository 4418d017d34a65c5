# file: src/rootfs/mod.rs
# mistake: pivot_root without umount2(old root, MNT_DETACH): the host's root stays attached (here: stacked on /)
# caught by: ch02_pivot_root_the_image_is_slash_and_the_old_root_is_gone
/umount2("\.", MntFlags::MNT_DETACH)/d
