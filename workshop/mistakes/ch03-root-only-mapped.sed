# file: src/userns.rs
# mistake: only root mapped (a map of length 1): the image's other users are nobody
# caught by: ch03_id_maps_container_root_is_not_host_root
/^fn root_plan/,/^}/s|len: DEFAULT_LEN,|len: 1,|
