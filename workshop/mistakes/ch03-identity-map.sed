# file: src/userns.rs
# mistake: an identity map (0 0 65536): container root is host root
# caught by: ch03_id_maps_container_root_is_not_host_root
/^fn root_plan/,/^}/s|outside: [ug],|outside: 0,|
