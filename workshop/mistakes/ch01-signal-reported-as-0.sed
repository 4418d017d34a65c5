# file: src/error.rs
# mistake: a signal death reported as 0 (or as the bare signal number) instead of 128 + N
# caught by: ch01_exit_status_a_signal_death_is_128_plus_n
s|Some(128 + sig as i32)|Some(0)|
