# file: src/cgroups/v1.rs
# file: src/cgroups/v2.rs
# mistake: the cgroup made but the limit never written
# caught by: ch04_create_the_limit_is_written, ch04_attach_the_limit_holds_for_the_container
s|Some(p) => write_file(&p, &w.value)?,|Some(_) => {}|
s|^\( *\)write_file(&main, &w.value)?;|\1let _ = \&main;|
