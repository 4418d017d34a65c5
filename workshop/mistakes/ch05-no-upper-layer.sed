# file: src/overlay.rs
# mistake: the overlay made without upperdir/workdir: a read-only root, writes fail
# caught by: ch05_overlay_writes_land_in_the_layer_not_the_image
/ctx.set_string("upperdir"/d
/ctx.set_string("workdir"/d
