# file: src/userns.rs
# mistake: setgroups(0, []) forgotten: the host's supplementary groups stay (shown as 65534)
# caught by: ch03_become_root_uid_gid_0_and_no_host_groups
/nix::unistd::setgroups(&\[\])/d
