# file: src/namespaces.rs
# mistake: CLONE_NEWPID left out of clone3's flags
# caught by: ch01_clone_the_command_is_pid_1_of_its_own_pid_namespace
s|clone3::clone3(flags, cgroup_fd)|clone3::clone3(flags \& !(libc::CLONE_NEWPID as u64), cgroup_fd)|
