# file: src/network/netlink.rs
# mistake: the address added as a /32 (prefixlen not set): the gateway is not on-link
# caught by: ch06_address_eth0_has_its_address_and_prefix
s|hdr\[1\] = prefix;|hdr[1] = 32;|
