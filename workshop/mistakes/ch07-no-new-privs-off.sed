# file: src/security/mod.rs
# mistake: no_new_privs never set
# caught by: ch07_lock_down_no_new_privs_and_seccomp
/prctl::set_no_new_privs().context/d
