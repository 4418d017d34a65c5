# file: src/cgroups/mod.rs
# mistake: the cgroup made and limited, but the container never put into it (cgroup v1: cgroup.procs; v2 uses CLONE_INTO_CGROUP)
# caught by: ch04_attach_the_limit_holds_for_the_container
/write_file(&d.path.join("cgroup.procs"), &pid.to_string())?;/d
