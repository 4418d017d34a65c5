# file: src/cgroups/mod.rs
# mistake: the cgroup made and limited, but the container never put into it (cgroup v1: the child writes 0 to each tasks file; v2 uses CLONE_INTO_CGROUP)
# caught by: ch04_attach_the_limit_holds_for_the_container
s/            move_self(&tasks, &path)?;/            let _ = (\&tasks, \&path);/
