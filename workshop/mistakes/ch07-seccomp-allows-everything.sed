# file: src/security/mod.rs
# mistake: no seccomp filter installed: every syscall reaches the kernel
# caught by: ch07_lock_down_no_new_privs_and_seccomp
/^fn lock_down/,/^}/s|^    install_seccomp(cfg)$|    Ok(())|
