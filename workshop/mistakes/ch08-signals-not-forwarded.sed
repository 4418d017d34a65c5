# file: src/lifecycle/init.rs
# mistake: the init keeps the signals it receives instead of passing them on to the command
# caught by: ch08_reap_signals_reach_the_command
s|let _ = kill(child, sig);|let _ = (child, sig);|
