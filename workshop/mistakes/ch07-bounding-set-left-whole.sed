# file: src/security/caps.rs
# mistake: the bounding set left whole: a setuid-root binary gets every capability back
# caught by: ch07_bounding_set_is_docker_default
s/for cap in (0..64usize).filter(|c| !keep.has(\*c))/for cap in (0..64usize).filter(|_| false)/
