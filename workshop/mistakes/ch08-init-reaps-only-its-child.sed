# file: src/lifecycle/init.rs
# mistake: the init waits only for the command (waitpid(child)), orphans stay zombies
# caught by: ch08_reap_orphans_do_not_stay_zombies
s|waitpid(None, Some(WaitPidFlag::WNOHANG))|waitpid(child, Some(WaitPidFlag::WNOHANG))|
