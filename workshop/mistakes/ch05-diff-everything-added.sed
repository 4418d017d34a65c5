# file: src/overlay.rs
# mistake: every entry of the upper layer reported as A, without looking into the lower layers
# caught by: ch05_diff_lists_added_changed_deleted
s|out.push((if existed { 'C' } else { 'A' }, shown.clone()));|out.push(('A', shown.clone()));|
