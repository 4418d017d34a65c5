# file: src/overlay.rs
# mistake: whiteouts (0:0 character devices) not reported as D
# caught by: ch05_diff_lists_added_changed_deleted
/out.push(('D', shown));/d
