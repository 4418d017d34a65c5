# file: src/security/caps.rs
# mistake: the inheritable set left as it was instead of emptied
# caught by: ch07_capabilities_effective_is_docker_default
s|inheritable: 0,|inheritable: half(want, hi),|
