# file: src/network/netlink.rs
# mistake: the veth's peer not moved into the container's namespace (IFLA_NET_NS_FD)
# caught by: ch06_veth_eth0_is_up_inside_and_reaches_the_bridge
/\.attr_u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32)/d
