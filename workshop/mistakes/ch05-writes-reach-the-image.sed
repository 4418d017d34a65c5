# file: src/overlay.rs
# mistake: the image itself mounted read-write as the root (an idmapped bind of ROOTFS) instead of an overlay with the image as its read-only lower layer: writes reach the image
# caught by: ch05_overlay_writes_land_in_the_layer_not_the_image
s/mountapi::MOUNT_ATTR_IDMAP | mountapi::MOUNT_ATTR_RDONLY, true/mountapi::MOUNT_ATTR_IDMAP, true/
s/^\( *\)let trees = idmapped_lowers(lowers, ns.as_fd())?;$/&\n\1if layer.is_some() {\n\1    return trees.into_iter().last().context("no image");\n\1}/
